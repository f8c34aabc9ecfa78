//! What the core holds in memory, counted (not walked): table sizes and the timer heap's
//! allocation. For the memory bench (`benches/core_memory.rs`) and diagnostics; cheap
//! (no iteration over the tables).

use super::Proxy;

/// Table sizes of a [`Proxy`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Server transactions before their final response.
    pub servers: usize,
    /// Server transactions past it (compact records: Timers G–J, L).
    pub finished_servers: usize,
    /// Client transactions before their final response.
    pub clients: usize,
    /// Client transactions past it (compact records: Timers D, K).
    pub finished_clients: usize,
    /// Dialogs (calls, forks, subscriptions).
    pub dialogs: usize,
    /// Entries in the timer heap, stale ones included (a timer is never cancelled).
    pub timers: usize,
    /// Bytes the timer heap has allocated (capacity × entry size).
    pub timer_bytes: usize,
}

impl Proxy {
    /// The core's table sizes now.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            servers: self.servers.len(),
            finished_servers: self.finished_servers.len(),
            clients: self.clients.len(),
            finished_clients: self.finished_clients.len(),
            dialogs: self.dialogs.len(),
            timers: self.timers.len(),
            timer_bytes: self.timers.allocated_bytes(),
        }
    }
}
