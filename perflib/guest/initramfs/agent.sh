#!/bin/sh
# perflib guest agent (run once by busybox init). Over the writable 9p share /ctl it:
# - supervises the service (/ctl/app.sh; stdout/stderr → /ctl/service.log) with Fly's
#   default restart policy: restart on a non-zero exit, at most $MAX_RESTARTS times;
# - samples /proc every $INTERVAL s into /ctl/samples.log:
#   uptime MemTotal MemAvailable Cached service_rss_kB cpu_busy_jiffies cpu_total_jiffies
# - runs commands the host drops as /ctl/cmd/N.sh (→ N.out, N.rc).
# Every line starts with the guest's uptime, which the host maps to wall-clock time.
export PATH=/bin:/usr/bin
CTL=/ctl
INTERVAL=$(cat $CTL/interval 2>/dev/null || echo 1)
MAX_RESTARTS=$(cat $CTL/max_restarts 2>/dev/null || echo 10)
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "$(up) $*" >> $CTL/agent.log; }

supervise() {
    n=0
    while :; do
        sh $CTL/app.sh >> $CTL/service.log 2>&1 &
        pid=$!
        echo $pid > $CTL/service.pid
        log start $pid
        wait $pid
        code=$?
        log exit $code
        [ $code -eq 0 ] && break
        if [ $n -ge $MAX_RESTARTS ]; then log exhausted $n; break; fi
        n=$((n + 1))
        log restart $n
        sleep 1
    done
}

rss_of() {
    rss=0
    for p in "$@"; do
        while read -r k v _; do
            [ "$k" = "VmRSS:" ] && rss=$((rss + v))
        done < /proc/$p/status 2>/dev/null
    done
    echo $rss
}

sample() {
    mt=0; ma=0; ca=0
    while read -r k v _; do
        case $k in MemTotal:) mt=$v ;; MemAvailable:) ma=$v ;; Cached:) ca=$v ;; esac
    done < /proc/meminfo
    read -r _ us ni sy id io irq sirq st _ < /proc/stat
    busy=$((us + ni + sy + irq + sirq + st))
    total=$((busy + id + io))
    rss=0
    pid=$(cat $CTL/service.pid 2>/dev/null)
    if [ -n "$pid" ] && [ -d /proc/$pid ]; then
        rss=$(rss_of $pid $(cat /proc/$pid/task/*/children 2>/dev/null))
    fi
    echo "$(up) $mt $ma $ca $rss $busy $total" >> $CTL/samples.log
}

commands() {
    for f in $CTL/cmd/*.sh; do
        [ -e "$f" ] || continue
        b=${f%.sh}
        mv "$f" "$b.run" || continue
        ( sh "$b.run" > "$b.out" 2>&1; echo $? > "$b.rc.tmp"; mv "$b.rc.tmp" "$b.rc" ) &
    done
}

mkdir -p $CTL/cmd
log ready "$(uname -r)" "$(nproc)"
echo "perflib-agent: ready $(up)" > /dev/console
[ -f $CTL/app.sh ] && supervise &
while :; do
    sample
    commands
    sleep "$INTERVAL"
done
