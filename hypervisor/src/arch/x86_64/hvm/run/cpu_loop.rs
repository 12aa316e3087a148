//! Each CPU's loop: run due timers, end the machine once the last domain
//! is gone (the boot CPU), then run the vCPU the scheduler picks, or idle.

use super::run_vcpu;
use crate::arch::x86_64::power;
use crate::domain::lifecycle;
use crate::sched;

pub fn cpu_loop(cpu: u32) -> ! {
    let cpu = cpu as usize;
    loop {
        sched::softirqs();
        if cpu == 0 && lifecycle::machine_exit_requested() {
            log::info!("all domains have shut down");
            lifecycle::report_memory_returned();
            power::end_machine(lifecycle::machine_action());
        }
        sched::maybe_report();
        match sched::pick_next(cpu) {
            Some((dom, vid)) => {
                run_vcpu(&dom, vid);
                if sched::after_run(&dom, vid) {
                    lifecycle::vcpus_left(&dom, 1);
                }
            }
            None => sched::idle(cpu),
        }
    }
}
