//! The user agent's transaction tables: a server transaction per request
//! (retransmissions answered from it), a client transaction per request we
//! send, and carrying out what the machines in [`crate::sip::txn`] ask.

use std::net::SocketAddr;

use bulkhead_shared::room::shrink_when_sparse;

use super::{requests, Event, Incoming, Ua};
use crate::sip::transport::Origin;
use crate::sip::txn::{
    ClientKey, ClientNonInvite, Output, ServerInvite, ServerKey, ServerNonInvite,
};

/// Most server transactions held at once. Past it (a flood on the trunk
/// port), requests are still answered, statelessly: memory stays bounded.
pub(super) const MAX_SERVER_TRANSACTIONS: usize = 10_000;

/// How often a full table is logged: a flood answered statelessly is one
/// line per period with its count, not a line per request.
pub(super) const TABLE_FULL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
pub(super) enum ServerTxn {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

#[derive(Debug)]
pub(super) struct ServerEntry {
    pub txn: ServerTxn,
    pub origin: Origin,
    pub dest: SocketAddr,
}

/// Why we sent a request of our own.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// Ending a call whose caller went quiet.
    Bye,
    /// Refreshing a call's session timer (we are the refresher).
    Refresh { call_id: String },
    /// Asking whether a call's dialog still exists (no session timer).
    Probe { call_id: String },
    /// Asking the caller's side to transfer the call (REFER).
    Refer { call_id: String },
}

#[derive(Debug)]
pub(super) struct ClientEntry {
    pub txn: ClientNonInvite,
    pub origin: Origin,
    pub dest: SocketAddr,
    pub purpose: Purpose,
}

/// Entries a table keeps room for however empty it gets
/// ([`bulkhead_shared::room::shrink_when_sparse`]).
pub(super) const KEEP: usize = 256;

impl Ua {
    /// A new server transaction, unless the table is full (then the
    /// request is answered without one).
    pub(super) fn open_server_transaction(
        &mut self,
        origin: Origin,
        dest: SocketAddr,
        key: ServerKey,
        invite: bool,
    ) -> Incoming {
        if self.servers.len() >= self.max_servers {
            if let Some(requests) = self.table_full.count(std::time::Instant::now()) {
                tracing::warn!(
                    requests,
                    "server transaction table full ({MAX_SERVER_TRANSACTIONS}); answering statelessly"
                );
            }
            return Incoming {
                origin,
                dest,
                key: None,
            };
        }
        let reliable = origin.is_reliable();
        let txn = if invite {
            ServerTxn::Invite(ServerInvite::new(reliable))
        } else {
            ServerTxn::NonInvite(ServerNonInvite::new(reliable))
        };
        let entry = ServerEntry {
            txn,
            origin: origin.clone(),
            dest,
        };
        self.servers.insert(key.clone(), entry);
        Incoming {
            origin,
            dest,
            key: Some(key),
        }
    }

    /// Sends `response` (status `code`) through the request's transaction.
    pub(super) async fn respond(&mut self, inc: &Incoming, code: u16, response: Vec<u8>) {
        let outs = match inc.key.as_ref().and_then(|k| self.servers.get_mut(k)) {
            Some(ServerEntry {
                txn: ServerTxn::Invite(t),
                ..
            }) => t.respond(code, response),
            Some(ServerEntry {
                txn: ServerTxn::NonInvite(t),
                ..
            }) => t.respond(code, response),
            None => return self.out.send(&inc.origin, inc.dest, response).await,
        };
        if let Some(key) = &inc.key {
            self.run_server(key, outs).await;
        }
    }

    /// Carries out a server transaction's outputs.
    pub(super) async fn run_server(&mut self, key: &ServerKey, outs: Vec<Output>) {
        let Some(entry) = self.servers.get(key) else {
            return;
        };
        let (origin, dest) = (entry.origin.clone(), entry.dest);
        for out in outs {
            match out {
                Output::Send(bytes) => self.out.send(&origin, dest, bytes).await,
                Output::Arm(timer, after) => {
                    let key = key.clone();
                    self.arm(Event::ServerTimer { key, timer }, timer, after);
                }
                Output::Timeout => tracing::debug!("no ACK came for a final response"),
                Output::Terminated => {
                    self.servers.remove(key);
                    shrink_when_sparse(&mut self.servers, KEEP);
                }
                Output::Deliver => {}
            }
        }
    }

    /// Sends a request of ours along `origin`'s flow, in a client transaction.
    pub(super) async fn start_request(
        &mut self,
        origin: Origin,
        dest: SocketAddr,
        request: requests::Built,
        purpose: Purpose,
    ) {
        let (txn, outs) = ClientNonInvite::start(request.bytes, origin.is_reliable());
        let key = request.key;
        let entry = ClientEntry {
            txn,
            origin,
            dest,
            purpose,
        };
        self.clients.insert(key.clone(), entry);
        // A fresh transaction only sends and arms timers: no outcome yet.
        let _ = self.run_client(&key, outs, None).await;
    }

    /// Carries out a client transaction's outputs; `code` is the response
    /// just given to it, if any. Returns the request's final outcome when
    /// there is one (`Some(None)` inside: no answer came), for
    /// [`Ua::request_answered`].
    pub(super) async fn run_client(
        &mut self,
        key: &ClientKey,
        outs: Vec<Output>,
        code: Option<u16>,
    ) -> Option<(Purpose, Option<u16>)> {
        let entry = self.clients.get(key)?;
        let mut outcome = None;
        let (origin, dest, purpose) = (entry.origin.clone(), entry.dest, entry.purpose.clone());
        for out in outs {
            match out {
                Output::Send(bytes) => self.out.send(&origin, dest, bytes).await,
                Output::Arm(timer, after) => {
                    let key = key.clone();
                    self.arm(Event::ClientTimer { key, timer }, timer, after);
                }
                Output::Deliver => {
                    if let Some(code) = code.filter(|c| *c >= 200) {
                        outcome = Some((purpose.clone(), Some(code)));
                    }
                }
                Output::Timeout => outcome = Some((purpose.clone(), None)),
                Output::Terminated => {
                    self.clients.remove(key);
                    shrink_when_sparse(&mut self.clients, KEEP);
                }
            }
        }
        outcome
    }
}
