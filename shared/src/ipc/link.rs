//! The async end of a socketpair, for use inside a tokio runtime.
//!
//! tokio has no `SOCK_SEQPACKET` type, so this wraps the descriptor in
//! `AsyncFd` and calls [`super::fds`] when the kernel says it is ready. All
//! methods take `&self`: one task can wait for frames while others send.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::codec::{self, CodecError, MAX_FRAME};
use super::fds::{self, Received};
use super::message::{FromWorker, ToWorker};

/// One end of a supervisor ↔ worker socketpair.
#[derive(Debug)]
pub struct Link {
    fd: AsyncFd<OwnedFd>,
}

/// A frame that arrived but could not be decoded, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("socketpair I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("peer sent an invalid frame: {0}")]
    Codec(#[from] CodecError),
}

impl Link {
    /// Wraps `fd`, switching it to non-blocking mode. Must be called inside a
    /// tokio runtime.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: an OwnedFd returns the same open descriptor from as_raw_fd()
        // for as long as it lives, and the AsyncFd owns it; nothing hands out
        // `&mut` access that could swap it.
        let fd = unsafe {
            AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE)
        }?;
        Ok(Self { fd })
    }

    /// Two connected ends of a new `SOCK_SEQPACKET` socketpair, as a
    /// worker's link is made (tests of both sides use it).
    pub fn pair() -> io::Result<(Self, Self)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Self::new(a)?, Self::new(b)?))
    }

    /// Sends one packet, waiting while the socket buffer is full.
    pub async fn send_packet(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| fds::send_packet(inner.get_ref().as_fd(), frame, fds)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `frames` in order, as many per system call as the socket
    /// buffer takes, waiting while it is full.
    pub async fn send_packets(&self, mut frames: &[Vec<u8>]) -> io::Result<()> {
        while !frames.is_empty() {
            let mut guard = self.fd.writable().await?;
            if let Ok(sent) =
                guard.try_io(|inner| fds::send_packets(inner.get_ref().as_fd(), frames))
            {
                frames = &frames[sent?..];
            }
        }
        Ok(())
    }

    /// Sends one packet, with `fds` attached when not empty, if the socket
    /// buffer has room right now (`WouldBlock` if not). Used where a slow
    /// peer must never stall the sender: the router's fan-out, the
    /// supervisor's answers to a worker.
    pub fn try_send_packet(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        fds::send_packet(self.fd.get_ref().as_fd(), frame, fds)
    }

    /// Bytes sent on this end that the peer has not read yet, as the
    /// kernel charges them against the send buffer (each packet's data and
    /// its bookkeeping).
    pub fn unread_bytes(&self) -> io::Result<usize> {
        // SIOCOUTQ; libc names it by its terminal twin, the same number.
        use nix::libc::{c_int, ioctl, TIOCOUTQ as SIOCOUTQ};
        let mut bytes: c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer, which points
        // at a live local; the descriptor is ours for as long as `self` lives.
        if unsafe { ioctl(self.fd.get_ref().as_raw_fd(), SIOCOUTQ, &mut bytes) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(bytes.max(0) as usize)
    }

    /// Receives one packet into `buf` (at least [`MAX_FRAME`] long).
    /// `Ok(None)` means the peer closed its end.
    pub async fn recv_packet(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        debug_assert!(buf.len() >= MAX_FRAME);
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| fds::recv_packet(inner.get_ref().as_fd(), buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Supervisor side: sends a message to the worker.
    pub async fn send_to_worker(&self, msg: &ToWorker) -> Result<(), LinkError> {
        let mut buf = Vec::new();
        codec::encode_to_worker(msg, &mut buf)?;
        Ok(self.send_packet(&buf, &[]).await?)
    }

    /// Worker side: sends a message to the supervisor.
    pub async fn send_to_supervisor(&self, msg: &FromWorker) -> Result<(), LinkError> {
        let mut buf = Vec::new();
        codec::encode_from_worker(msg, &mut buf)?;
        Ok(self.send_packet(&buf, &[]).await?)
    }

    /// Supervisor side: the next message from the worker; `None` once the
    /// worker closed its end (it exited). Descriptors from a worker are never
    /// expected and are closed.
    pub async fn recv_from_worker(&self, buf: &mut [u8]) -> Result<Option<FromWorker>, LinkError> {
        match self.recv_packet(buf).await? {
            None => Ok(None),
            Some(Received { len, fds: _closed }) => {
                Ok(Some(codec::decode_from_worker(&buf[..len])?))
            }
        }
    }

    /// Worker side: the next message from the supervisor; `None` once the
    /// supervisor is gone.
    pub async fn recv_from_supervisor(
        &self,
        buf: &mut [u8],
    ) -> Result<Option<(ToWorker, Vec<OwnedFd>)>, LinkError> {
        match self.recv_packet(buf).await? {
            None => Ok(None),
            Some(Received { len, fds }) => Ok(Some((codec::decode_to_worker(&buf[..len])?, fds))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn unread_bytes_count_what_the_peer_has_not_read() {
        let (sender, reader) = Link::pair().unwrap();
        assert_eq!(sender.unread_bytes().unwrap(), 0);
        sender.try_send_packet(&[7; 600], &[]).unwrap();
        let one = sender.unread_bytes().unwrap();
        assert!(one >= 600, "one 600-byte packet counts {one}");
        sender.try_send_packet(&[7; 600], &[]).unwrap();
        assert!(sender.unread_bytes().unwrap() > one);
        let mut buf = vec![0; MAX_FRAME];
        for _ in 0..2 {
            reader.recv_packet(&mut buf).await.unwrap().unwrap();
        }
        assert_eq!(sender.unread_bytes().unwrap(), 0);
    }
}
