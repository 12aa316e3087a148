#!/bin/sh
# /init of the test initramfs `cargo xtask guests` builds (xtask/src/linux/init.sh).
#
# The kernel hands boot options it does not know (`name=value`, no dot) to
# init as environment variables, so a test picks what this boot does with
# `hvtest=` on the domain's command line:
#   info     power off
#   balloon  give 32 MiB back to the hypervisor, take it again, power off
#   crash    crash the kernel (sysrq c)
#   idle     wait (for a test to end the machine)
#   shell    (or nothing) a shell on the console; power off when it exits
# Each first reports what the guest sees. Every line meant for a test
# starts with "hvtest: ".

/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "hvtest: $*"; }

info() {
    say "cpus $(grep -c ^processor /proc/cpuinfo), online $(cat /sys/devices/system/cpu/online)"
    say "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    dmesg | grep -q 'xen:events: Using 2-level ABI' && say "event channels 2-level"
    dmesg | grep -q 'xen:events: Using FIFO-based ABI' && say "event channels FIFO"
    dmesg | grep -q 'Grant tables using version 1 layout' && say "grant tables v1"
    say "memory $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
}

# Waits up to 30 s for the balloon to reach its target; prints where it is.
balloon_settle() {
    b=/sys/devices/system/xen_memory/xen_memory0
    n=0
    while [ "$(cat $b/info/current_kb)" != "$1" ] && [ $n -lt 300 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    cat $b/info/current_kb
}

balloon() {
    b=/sys/devices/system/xen_memory/xen_memory0
    start=$(cat $b/info/current_kb)
    say "balloon at $start kB"
    echo $((start - 32768)) > $b/target_kb
    say "balloon down to $(balloon_settle $((start - 32768))) kB"
    echo "$start" > $b/target_kb
    say "balloon back to $(balloon_settle "$start") kB"
}

say "init reached (${hvtest:-shell})"
info
case "${hvtest:-shell}" in
info) ;;
balloon)
    balloon
    ;;
crash)
    say "crashing"
    echo c > /proc/sysrq-trigger
    ;;
idle)
    while :; do sleep 60; done
    ;;
shell)
    say "shell on the console; 'exit' powers off"
    setsid cttyhack sh -l
    ;;
*)
    say "unknown hvtest=$hvtest"
    ;;
esac
say "powering off"
poweroff -f
