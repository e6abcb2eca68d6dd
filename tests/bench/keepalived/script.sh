#!/bin/sh
# keepalived MISC_CHECK for the benchmark variant: the seed's script.sh
# (`misc_path "script.sh IP PORT"`). One SIP OPTIONS to IP:5060 sent with sipp
# from local UDP port PORT (each real server its own port, as the seed
# insists), `-m 1`; the exit code is the health: 0 up, anything else down.
# No 200 within 1 s (one retransmission at 500 ms) counts as down. SRC: the
# address to send from (default the LAN gateway; a pair box uses its own,
# since only the master holds the gateway).
case $# in 2 | 3) ;; *) echo "usage: $0 SERVER_IP LOCAL_PORT [SRC]" >&2; exit 2 ;; esac
cd /tmp || exit 1
exec /usr/bin/sipp "$1:5060" -sf /etc/keepalived/options.xml -i "${3:-198.51.100.1}" -p "$2" \
    -m 1 -recv_timeout 1000 -nostdin >/dev/null 2>&1
