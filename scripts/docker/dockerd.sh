#!/bin/bash
# dockerd.sh: a private docker daemon, started and stopped the same way for
# scripts/docker-test and for the tests that need a real docker
# (tests/root/test_layered_images_docker.py).
#
#   scripts/docker/dockerd.sh start DIR   a daemon with its socket (DIR/docker.sock), data root,
#                                         exec root, pid file and log all under DIR; installs
#                                         Debian's docker.io first if dockerd is missing
#   scripts/docker/dockerd.sh stop DIR    stop the daemon that `start DIR` started
#   . scripts/docker/dockerd.sh           (sourced) just defines need_package, start_dockerd, stop_dockerd
#
# The daemon gets no network setup of its own (--bridge=none --iptables=false,
# no masquerading or forwarding): it must not touch the host's firewall or
# interfaces, and its containers run with --network none or host.
# Exit status of start/stop: 0, or 125 when docker cannot run here.

# need_package COMMAND PACKAGE: apt-get install PACKAGE unless COMMAND exists.
need_package() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "dockerd.sh: installing $2" >&2
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2")
    if ! "${install[@]}" >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        "${install[@]}" >/dev/null || { echo "dockerd.sh: apt-get install $2 failed" >&2; return 1; }
    fi
}

# start_dockerd SOCKET DATA_ROOT EXEC_ROOT PIDFILE LOG [DOCKERD_ARGS...]: start a
# daemon (in its own session, so it can outlive the caller) and wait until it answers.
start_dockerd() {
    local sock=$1 data_root=$2 exec_root=$3 pidfile=$4 log=$5
    shift 5
    # (9>&-: docker-test's users lock must not be inherited by the daemon)
    setsid dockerd --host "unix://$sock" --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
        --data-root "$data_root" --exec-root "$exec_root" --pidfile "$pidfile" "$@" \
        >"$log" 2>&1 </dev/null 9>&- &
    local _
    for _ in $(seq 150); do
        timeout 10 docker -H "unix://$sock" info >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail -n 15 "$log" >&2
    return 1
}

# stop_dockerd PIDFILE: SIGTERM the daemon and wait (up to 20 s) until it is gone.
stop_dockerd() {
    local pid _
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
    action=${1:-} dir=${2:-}
    [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
    case $action in
        start)
            need_package dockerd docker.io || exit 125
            mkdir -p "$dir"
            start_dockerd "$dir/docker.sock" "$dir/data" "$dir/exec" "$dir/dockerd.pid" "$dir/dockerd.log" ||
                { stop_dockerd "$dir/dockerd.pid"; echo "dockerd.sh: dockerd did not start (see $dir/dockerd.log)" >&2; exit 125; }
            echo "unix://$dir/docker.sock"
            ;;
        stop) stop_dockerd "$dir/dockerd.pid" ;;
        *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
    esac
fi
