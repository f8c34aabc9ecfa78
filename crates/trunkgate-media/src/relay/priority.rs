//! Relay thread priority: `media.nice` applied with thread-priority at thread start.

/// Give this relay thread the nice value `nice` (media waits for no one: under CPU
/// contention a preempted relay thread is milliseconds of added latency; measured p99 at
/// 1,000 calls on 2 cores: 1.3–4.9 ms at nice 0, 0.46–0.66 ms at nice -10).
pub(crate) fn set_nice(n: usize, nice: i8) {
    apply_nice(&format!("media relay thread {n}"), "media.nice", nice);
}

/// Give the calling thread (`thread`, for the log) the nice value `nice` of setting `key`;
/// 0 leaves it. A refusal (lowering a nice value needs CAP_SYS_NICE) is one `warn` line,
/// never fatal. Used by the relay threads (`media.nice`) and the SIP thread (`sip.nice`).
pub fn apply_nice(thread: &str, key: &str, nice: i8) {
    match set_current_thread_nice(nice) {
        Ok(true) => tracing::debug!(thread, nice, "thread priority set"),
        Ok(false) => {}
        Err(error) => tracing::warn!(
            thread,
            nice,
            %error,
            "{thread} keeps the default priority ({key} needs CAP_SYS_NICE)"
        ),
    }
}

pub fn set_current_thread_nice(nice: i8) -> Result<bool, String> {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    if nice == 0 {
        return Ok(false);
    }
    // thread-priority maps its 0..=99 scale onto nice -20..=19 for normal scheduling; pick
    // the value that lands on `nice`.
    let value = (0..=99u8).find(|&p| nice_of(p) == i32::from(nice));
    let Some(value) = value.and_then(|p| ThreadPriorityValue::try_from(p).ok()) else {
        return Err(format!("no priority value gives nice {nice}"));
    };
    set_current_thread_priority(ThreadPriority::Crossplatform(value))
        .map(|()| true)
        .map_err(|e| format!("{e:?}"))
}

/// The nice value thread-priority 3 derives from its cross-platform value `p`
/// (`unix.rs`, `ThreadPriority::to_posix`, normal policies).
fn nice_of(p: u8) -> i32 {
    let ratio = 1f32 - f32::from(p) / 99.0;
    (39.0 * ratio) as i32 - 20
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_useful_nice_value_has_a_priority_value() {
        for nice in -20..=19 {
            assert!(
                (0..=99u8).any(|p| super::nice_of(p) == nice),
                "nice {nice} unreachable"
            );
        }
    }
}
