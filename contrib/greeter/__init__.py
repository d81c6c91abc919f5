"""The greeter example: a service, a streaming endpoint, a subscriber, and a demo that drives them."""
