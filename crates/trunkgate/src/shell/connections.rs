//! The core task's table of stream connections (TCP and TLS): id → writer queue, and
//! (transport, remote address) → id for transmits that name no connection, so that one
//! connection per peer carries every call (RFC 3261 §18, RFC 5923) and a TLS transmit never
//! goes onto a plain TCP connection to the same address. Owned by the core task alone
//! (plain `HashMap`s, no locks).

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use trunkgate_sip::{ConnId, Flow, Transport};

#[derive(Debug)]
struct Conn {
    flow: Flow,
    peer: SocketAddr,
    /// `None` once the core has given up on the connection (queue full): dropping the sender
    /// ends the writer task, and the reader reports `Closed`.
    writer: Option<mpsc::Sender<Bytes>>,
    /// Opened by us (to `peer`'s listening address), not accepted.
    outgoing: bool,
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
    by_peer: HashMap<(Transport, SocketAddr), ConnId>,
}

impl Connections {
    /// Register a connection (`flow.conn` must be set).
    pub fn insert(&mut self, flow: Flow, peer: SocketAddr, writer: mpsc::Sender<Bytes>) {
        self.add(flow, peer, writer, false);
    }

    /// Register a connection we are opening to `peer` (`flow.conn` must be set).
    pub fn insert_outgoing(&mut self, flow: Flow, peer: SocketAddr, writer: mpsc::Sender<Bytes>) {
        self.add(flow, peer, writer, true);
    }

    fn add(&mut self, flow: Flow, peer: SocketAddr, writer: mpsc::Sender<Bytes>, outgoing: bool) {
        let Some(id) = flow.conn else { return };
        self.by_id.insert(
            id,
            Conn {
                flow,
                peer,
                writer: Some(writer),
                outgoing,
            },
        );
        self.by_peer.insert((flow.transport, peer), id);
    }

    /// The destination of `id` if we opened it.
    pub fn outgoing_peer(&self, id: ConnId) -> Option<SocketAddr> {
        self.by_id.get(&id).filter(|c| c.outgoing).map(|c| c.peer)
    }

    /// An open connection over `transport` to `peer`, if any.
    pub fn to_peer(&self, transport: Transport, peer: SocketAddr) -> Option<ConnId> {
        self.by_peer.get(&(transport, peer)).copied()
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
            let key = (conn.flow.transport, conn.peer);
            if self.by_peer.get(&key) == Some(&id) {
                self.by_peer.remove(&key);
            }
        }
    }

    /// Forget `id` for good; returns its flow if it was known.
    pub fn remove(&mut self, id: ConnId) -> Option<Flow> {
        let conn = self.by_id.remove(&id)?;
        let key = (conn.flow.transport, conn.peer);
        if self.by_peer.get(&key) == Some(&id) {
            self.by_peer.remove(&key);
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
        assert_eq!(conns.to_peer(Transport::Tcp, peer), Some(ConnId(1)));
        conns.send(ConnId(1), Bytes::from_static(b"a")).unwrap();
        assert_eq!(
            conns.send(ConnId(1), Bytes::from_static(b"b")),
            Err(SendError::Full)
        );
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"a"));
        conns.close(ConnId(1));
        assert_eq!(conns.to_peer(Transport::Tcp, peer), None);
        assert_eq!(conns.send(ConnId(1), Bytes::new()), Err(SendError::Gone));
        assert!(
            rx.try_recv().is_err(),
            "writer queue closed once the core lets go"
        );
        assert_eq!(conns.outgoing_peer(ConnId(1)), None, "accepted, not opened");
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
        assert_eq!(conns.to_peer(Transport::Tcp, peer), Some(ConnId(2)));
    }

    #[test]
    fn connections_we_open_know_their_destination() {
        let mut conns = Connections::default();
        let peer: SocketAddr = "127.0.0.3:5061".parse().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        conns.insert_outgoing(flow(3), peer, tx);
        assert_eq!(conns.outgoing_peer(ConnId(3)), Some(peer));
        assert_eq!(conns.to_peer(Transport::Tcp, peer), Some(ConnId(3)));
    }

    #[test]
    fn tls_and_tcp_to_one_address_are_different_connections() {
        let mut conns = Connections::default();
        let peer: SocketAddr = "127.0.0.3:5061".parse().unwrap();
        let (tx1, _rx1) = mpsc::channel(1);
        conns.insert(flow(1), peer, tx1);
        assert_eq!(conns.to_peer(Transport::Tls, peer), None, "TCP is no TLS");
        let (tx2, _rx2) = mpsc::channel(1);
        let tls = Flow {
            transport: Transport::Tls,
            ..flow(2)
        };
        conns.insert(tls, peer, tx2);
        assert_eq!(conns.to_peer(Transport::Tls, peer), Some(ConnId(2)));
        assert_eq!(conns.to_peer(Transport::Tcp, peer), Some(ConnId(1)));
        conns.close(ConnId(2));
        assert_eq!(conns.to_peer(Transport::Tls, peer), None);
        assert_eq!(conns.to_peer(Transport::Tcp, peer), Some(ConnId(1)));
    }
}
