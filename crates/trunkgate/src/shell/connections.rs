//! The core task's table of TCP connections: id → writer queue, and remote address → id for
//! transmits that name no connection. Owned by the core task alone (plain `HashMap`s, no
//! locks).

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use trunkgate_sip::{ConnId, Flow};

#[derive(Debug)]
struct Conn {
    flow: Flow,
    peer: SocketAddr,
    /// `None` once the core has given up on the connection (queue full): dropping the sender
    /// ends the writer task, and the reader reports `Closed`.
    writer: Option<mpsc::Sender<Bytes>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such connection, or it is closing.
    Gone,
    /// The queue is full: the peer is not reading. The caller closes the connection.
    Full,
}

#[derive(Debug, Default)]
pub struct Connections {
    by_id: HashMap<ConnId, Conn>,
    by_peer: HashMap<SocketAddr, ConnId>,
}

impl Connections {
    /// Register a connection (`flow.conn` must be set).
    pub fn insert(&mut self, flow: Flow, peer: SocketAddr, writer: mpsc::Sender<Bytes>) {
        let Some(id) = flow.conn else { return };
        self.by_id.insert(
            id,
            Conn {
                flow,
                peer,
                writer: Some(writer),
            },
        );
        self.by_peer.insert(peer, id);
    }

    /// An open connection to `peer`, if any.
    pub fn to_peer(&self, peer: SocketAddr) -> Option<ConnId> {
        self.by_peer.get(&peer).copied()
    }

    /// Queue `data` on connection `id` (never waits).
    pub fn send(&self, id: ConnId, data: Bytes) -> Result<(), SendError> {
        let writer = self
            .by_id
            .get(&id)
            .and_then(|c| c.writer.as_ref())
            .ok_or(SendError::Gone)?;
        writer.try_send(data).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Gone,
        })
    }

    /// Start closing `id`: no more sends; the `Closed` event follows from its tasks.
    pub fn close(&mut self, id: ConnId) {
        if let Some(conn) = self.by_id.get_mut(&id) {
            conn.writer = None;
            if self.by_peer.get(&conn.peer) == Some(&id) {
                self.by_peer.remove(&conn.peer);
            }
        }
    }

    /// Forget `id` for good; returns its flow if it was known.
    pub fn remove(&mut self, id: ConnId) -> Option<Flow> {
        let conn = self.by_id.remove(&id)?;
        if self.by_peer.get(&conn.peer) == Some(&id) {
            self.by_peer.remove(&conn.peer);
        }
        Some(conn.flow)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkgate_sip::Transport;

    fn flow(id: u64) -> Flow {
        Flow {
            transport: Transport::Tcp,
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: Some(ConnId(id)),
        }
    }

    #[test]
    fn routes_by_id_and_peer_and_forgets_on_close() {
        let mut conns = Connections::default();
        let peer: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        conns.insert(flow(1), peer, tx);
        assert_eq!(conns.to_peer(peer), Some(ConnId(1)));
        conns.send(ConnId(1), Bytes::from_static(b"a")).unwrap();
        assert_eq!(
            conns.send(ConnId(1), Bytes::from_static(b"b")),
            Err(SendError::Full)
        );
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"a"));
        conns.close(ConnId(1));
        assert_eq!(conns.to_peer(peer), None);
        assert_eq!(conns.send(ConnId(1), Bytes::new()), Err(SendError::Gone));
        assert!(
            rx.try_recv().is_err(),
            "writer queue closed once the core lets go"
        );
        assert_eq!(conns.remove(ConnId(1)), Some(flow(1)));
        assert_eq!(conns.remove(ConnId(1)), None);
        assert_eq!(conns.len(), 0);
    }

    #[test]
    fn a_newer_connection_to_the_same_peer_survives_the_older_closing() {
        let mut conns = Connections::default();
        let peer: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        conns.insert(flow(1), peer, tx1);
        conns.insert(flow(2), peer, tx2);
        conns.remove(ConnId(1));
        assert_eq!(conns.to_peer(peer), Some(ConnId(2)));
    }
}
