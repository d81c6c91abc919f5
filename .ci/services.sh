#!/usr/bin/env bash
# Make sure every backend the plugin suites talk to is listening on loopback.
# Services this machine kind starts before a session are only started when their port is closed;
# Consul is fetched from Debian's archive (bullseye, unpacked, never installed) and started here; etcd is
# installed from Debian (etcd-server) and started on a temporary data directory.
# Sourced by .ci/run: exports CONSUL_HTTP_ADDR when a Consul agent is up (the suites default to 127.0.0.1:8500;
# with CI=true a backend that does not answer fails its suite, it is never skipped).
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port, seconds
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do port_open "$1" && return 0; sleep 0.1; done
  return 1
}

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 10 || echo "services: redis did not start"
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached >/dev/null 2>&1
}

ensure_nats() {
  port_open 4222 && return 0
  command -v nats-server >/dev/null || apt_install nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 10 || echo "services: nats did not start"
}

ensure_postgres() {
  if ! port_open 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
    wait_port 5432 15 || { echo "services: postgres did not start"; return 0; }
  fi
  # micro-postgres's tests connect as this user to the database "test" (trust auth on loopback).
  command -v psql >/dev/null && id postgres >/dev/null 2>&1 || return 0
  local me
  me=$(id -un)
  su postgres -s /bin/sh -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$me'\"" 2>/dev/null | grep -q 1 \
    || su postgres -s /bin/sh -c "createuser -s '$me'" >/dev/null 2>&1 || true
  su postgres -s /bin/sh -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" 2>/dev/null | grep -q 1 \
    || su postgres -s /bin/sh -c "createdb -O '$me' test" >/dev/null 2>&1 || true
}

ensure_consul() {
  if [ -n "${CONSUL_HTTP_ADDR:-}" ]; then return 0; fi
  if port_open 8500; then export CONSUL_HTTP_ADDR=127.0.0.1:8500; return 0; fi
  local dir=${CONSUL_DIR:-/tmp/micro-ci-consul}
  local consul="$dir/root/usr/bin/consul"
  if [ ! -x "$consul" ]; then
    mkdir -p "$dir/parts" "$dir/lists/partial" "$dir/cache/archives/partial"
    local uri
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    if [ -z "$uri" ]; then echo "services: consul DOWN (the Consul suite will fail): no Debian archive URI in apt sources"; return 0; fi
    printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" > "$dir/parts/bullseye.sources"
    local opts=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$dir/parts"
                -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o APT::Sandbox::User=root)
    if ! apt-get "${opts[@]}" update -qq >/dev/null 2>&1 \
       || ! ( cd "$dir" && apt-get "${opts[@]}" download -qq consul >/dev/null 2>&1 ) \
       || ! dpkg-deb -x "$dir"/consul_*.deb "$dir/root"; then
      echo "services: consul DOWN (the Consul suite will fail): could not download the consul package from Debian's bullseye suite"
      return 0
    fi
  fi
  "$consul" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -hcl 'disable_update_check = true' \
    -log-level warn > "$dir/agent.log" 2>&1 &
  echo $! > "$dir/pid"
  local i leader
  for i in $(seq 1 150); do
    leader=$(curl -sf http://127.0.0.1:8500/v1/status/leader 2>/dev/null || true)
    if [ -n "$leader" ] && [ "$leader" != '""' ]; then export CONSUL_HTTP_ADDR=127.0.0.1:8500; return 0; fi
    sleep 0.1
  done
  echo "services: consul DOWN (the Consul suite will fail): agent started but elected no leader (see $dir/agent.log)"
}

ensure_etcd() {
  # Never pre-started on any machine kind: installed from Debian (etcd-server, 3.4) and run on a fresh data dir.
  if port_open 2379; then return 0; fi
  command -v etcd >/dev/null || apt_install etcd-server
  if ! command -v etcd >/dev/null; then echo "services: etcd DOWN (the etcd suite will fail): apt could not install etcd-server"; return 0; fi
  local dir
  dir=$(mktemp -d /tmp/micro-ci-etcd.XXXXXX)
  etcd --name ci --data-dir "$dir/data" --logger=zap --log-level warn \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster ci=http://127.0.0.1:2380 > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/pid"
  local i
  for i in $(seq 1 150); do
    curl -sf http://127.0.0.1:2379/health 2>/dev/null | grep -q '"true"' && return 0
    sleep 0.1
  done
  echo "services: etcd DOWN (the etcd suite will fail): started but not healthy (see $dir/etcd.log)"
}

# The network's three-node test puts each node in a network namespace of its own (`ip netns`, iproute2).
command -v ip >/dev/null || apt_install iproute2

# Debian's Chromium: the browser micro-web's tests drive headless (a tool, not a server).
ensure_chromium() {
  command -v chromium >/dev/null && return 0
  apt_install chromium || echo "services: chromium did not install"
  command -v chromium >/dev/null && echo "services: chromium $(chromium --version 2>/dev/null)"
}

# curl: the health checks below, and micro-api's tests call the gateway with it (a client nobody here wrote).
command -v curl >/dev/null || apt_install curl || echo "services: curl could not be installed (micro-api's curl test will fail)"
ensure_rabbitmq        # slowest to boot: start it first, wait for it last
ensure_redis
ensure_nats
ensure_postgres
ensure_consul
ensure_etcd
ensure_chromium
wait_port 5672 60 || echo "services: rabbitmq did not start"
for p in 6379 5672 4222 5432 2379; do port_open $p && echo "services: 127.0.0.1:$p up" || echo "services: 127.0.0.1:$p DOWN"; done
echo "services: consul ${CONSUL_HTTP_ADDR:-not available}"
echo "services: etcd $(curl -sf http://127.0.0.1:2379/version 2>/dev/null || echo 'not available')"
