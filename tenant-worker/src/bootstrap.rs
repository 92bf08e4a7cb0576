//! The worker's first act: read its [`Bootstrap`] frame and sockets from the
//! socketpair on fd 3, before any runtime or thread exists. Nothing comes from
//! argv or the environment.

use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use bulkhead_shared::ipc::codec::{decode_to_worker, MAX_FRAME};
use bulkhead_shared::ipc::fds::recv_packet;
use bulkhead_shared::ipc::message::BOOTSTRAP_FDS;
use bulkhead_shared::ipc::{Bootstrap, ToWorker};
use zeroize::Zeroize;

/// The descriptor the supervisor places the socketpair on.
pub const LINK_FD: i32 = 3;

/// Everything the worker starts with.
#[derive(Debug)]
pub struct Start {
    pub link: OwnedFd,
    pub boot: Bootstrap,
    pub sip_udp: UdpSocket,
    pub sip_tcp: TcpListener,
    pub http: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("fd {LINK_FD} is not a socketpair from the supervisor (bulkhead-worker is started by `bulkhead serve`, not by hand): {0}")]
    NoLink(std::io::Error),
    #[error("the supervisor closed the socketpair before sending the bootstrap frame")]
    Closed,
    #[error("the first frame was not a valid bootstrap frame: {0}")]
    BadFrame(String),
    #[error("the bootstrap frame carried {0} descriptors, expected {BOOTSTRAP_FDS}")]
    WrongFds(usize),
}

/// Reads the bootstrap frame (blocking).
#[allow(unsafe_code)] // one from_raw_fd, justified below
pub fn receive() -> Result<Start, BootstrapError> {
    // SAFETY: fd 3 is set up by the supervisor as this process's end of the
    // socketpair, and nothing else in this process claims it; if it is not
    // open, recvmsg below fails with EBADF and we report it.
    let link = unsafe { OwnedFd::from_raw_fd(LINK_FD) };
    let mut buf = vec![0u8; MAX_FRAME];
    let received = recv_packet(link.as_fd(), &mut buf)
        .map_err(BootstrapError::NoLink)?
        .ok_or(BootstrapError::Closed)?;
    let decoded = decode_to_worker(&buf[..received.len]);
    buf.zeroize(); // the frame held the data key
    let boot = match decoded {
        Ok(ToWorker::Bootstrap(b)) => *b,
        Ok(other) => return Err(BootstrapError::BadFrame(format!("{other:?}"))),
        Err(e) => return Err(BootstrapError::BadFrame(e.to_string())),
    };
    let mut fds = received.fds.into_iter();
    let (Some(udp), Some(tcp), Some(http), None) = (fds.next(), fds.next(), fds.next(), fds.next())
    else {
        return Err(BootstrapError::WrongFds(BOOTSTRAP_FDS));
    };
    Ok(Start {
        link,
        boot,
        sip_udp: UdpSocket::from(udp),
        sip_tcp: TcpListener::from(tcp),
        http: TcpListener::from(http),
    })
}
