//! Sending and receiving one packet with file descriptors attached.
//!
//! These work on blocking and non-blocking sockets alike: the worker's
//! bootstrap reads its first frame before any runtime exists, and [`super::link`]
//! calls them from inside `AsyncFd::try_io`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
};

/// Most descriptors one frame may carry. Bounded so that a hostile peer cannot
/// make us allocate or hold an unbounded number of descriptors.
pub const MAX_FDS: usize = 8;

/// Sends `buf` as one packet, with `fds` attached when not empty.
pub fn send_packet(sock: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let iov = [IoSlice::new(buf)];
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if sent != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short packet write",
        ));
    }
    Ok(())
}

/// Sends `frames` in order, one packet each, in one system call
/// (`sendmmsg`), without descriptors. Returns how many were sent: fewer
/// than all when the socket buffer filled; `WouldBlock` when none was.
pub fn send_packets(sock: BorrowedFd<'_>, frames: &[Vec<u8>]) -> io::Result<usize> {
    let mut headers = MultiHeaders::<()>::preallocate(frames.len(), None);
    let iovs: Vec<[IoSlice<'_>; 1]> = frames.iter().map(|f| [IoSlice::new(f)]).collect();
    let addresses = vec![None; frames.len()];
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        sock.as_raw_fd(),
        &mut headers,
        &iovs,
        addresses,
        no_cmsgs,
        MsgFlags::MSG_NOSIGNAL,
    )?;
    let mut count = 0;
    for (msg, frame) in sent.zip(frames) {
        if msg.bytes != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short packet write",
            ));
        }
        count += 1;
    }
    Ok(count)
}

/// One received packet: its length in the caller's buffer and any descriptors.
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
}

/// Receives one packet into `buf`. A packet that did not fit, or that carried
/// more than [`MAX_FDS`] descriptors, is an `InvalidData` error (the excess is
/// discarded by the kernel; descriptors that did arrive are closed).
/// `Ok(None)` means the peer closed the socket.
pub fn recv_packet(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in our table for this
                // message (SCM_RIGHTS); nothing else owns it yet.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet or its descriptors exceeded the frame limit",
        ));
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(Received {
        len: msg.bytes,
        fds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn packet_with_fds_round_trips() {
        let (a, b) = pair();
        let file = tempfile_fd();
        send_packet(a.as_fd(), b"hello", &[file.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let got = recv_packet(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert_eq!(got.fds.len(), 1);
    }

    #[test]
    fn oversized_packet_is_an_error_not_a_partial_read() {
        let (a, b) = pair();
        send_packet(a.as_fd(), &[7u8; 100], &[]).unwrap();
        let mut buf = [0u8; 10];
        let err = recv_packet(b.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn closed_peer_reads_as_none() {
        let (a, b) = pair();
        drop(a);
        let mut buf = [0u8; 10];
        assert!(recv_packet(b.as_fd(), &mut buf).unwrap().is_none());
    }

    fn tempfile_fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }
}
