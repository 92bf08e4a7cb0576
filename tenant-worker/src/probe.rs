//! Escape probes, run by a probe worker (`bulkhead audit`) in place of
//! serving: each tries to reach something of another tenant's or of the
//! host's that an outside caller could not reach, and reports whether it
//! did. Probes are defined by effect and chosen to change nothing: reads,
//! existence checks, and privileged calls aimed where they fail harmlessly
//! even when permitted (an `umount` of a path that does not exist, a module
//! load from an invalid descriptor).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use bulkhead_shared::ipc::probe::{ProbeOutcome, ProbeTargets};
use nix::errno::Errno;
use nix::unistd::Pid;

/// Runs every probe that has a target.
pub fn run_all(t: &ProbeTargets) -> Vec<ProbeOutcome> {
    let mut out = Vec::new();
    let state = &t.state_dir;
    out.push(read("read_master_key", &state.join("master.key")));
    out.push(read("read_registry", &state.join("registry.db")));
    out.push(list("list_tenants", &state.join("tenants")));
    if let Some(dir) = &t.other_data_dir {
        out.push(read("read_other_tenant_store", &dir.join("tenant.db")));
        out.push(list("list_other_tenant_dir", dir));
    }
    if let Some(port) = t.other_http_port {
        out.push(connect_tcp(
            "connect_other_tenant_http",
            SocketAddr::from(([127, 0, 0, 1], port)),
        ));
    }
    if let Some(pid) = t.other_pid {
        out.push(signal(pid));
        out.push(ptrace(pid));
        out.push(read(
            "read_other_process_proc",
            &Path::new("/proc").join(pid.to_string()).join("status"),
        ));
    }
    out.push(udp_socket(SocketAddr::from((
        [127, 0, 0, 1],
        t.router_port,
    ))));
    out.push(listen_tcp());
    out.push(raw_socket());
    out.push(mount());
    out.push(unshare());
    out.push(setuid_root());
    out.push(load_module());
    if let Some(limit) = t.tasks_limit {
        out.push(exhaust_tasks(limit));
    }
    if let Some(limit) = t.memory_limit {
        out.push(exhaust_memory(limit));
    }
    out
}

fn outcome(name: &str, target: impl Into<String>, result: Result<String, String>) -> ProbeOutcome {
    let (escaped, detail) = match result {
        Ok(reached) => (true, reached),
        Err(stopped) => (false, stopped),
    };
    ProbeOutcome {
        name: name.into(),
        target: target.into(),
        escaped,
        detail,
        port: None,
    }
}

fn read(name: &str, path: &Path) -> ProbeOutcome {
    let r = std::fs::File::open(path).and_then(|mut f| {
        let mut buf = [0u8; 16];
        f.read(&mut buf)
    });
    outcome(
        name,
        path.display().to_string(),
        r.map(|n| format!("read {n} bytes"))
            .map_err(|e| e.to_string()),
    )
}

fn list(name: &str, dir: &Path) -> ProbeOutcome {
    let r = std::fs::read_dir(dir).map(|entries| format!("listed {} entries", entries.count()));
    outcome(
        name,
        dir.display().to_string(),
        r.map_err(|e| e.to_string()),
    )
}

fn connect_tcp(name: &str, addr: SocketAddr) -> ProbeOutcome {
    let r = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    outcome(
        name,
        addr.to_string(),
        r.map(|_| "connected".into()).map_err(|e| e.to_string()),
    )
}

fn udp_socket(addr: SocketAddr) -> ProbeOutcome {
    let r = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"\r\n\r\n", addr));
    outcome(
        "new_udp_socket_to_host",
        addr.to_string(),
        r.map(|_| "sent a datagram".into())
            .map_err(|e| e.to_string()),
    )
}

/// A listener is an escape only if something outside can reach it: the
/// listener stays open (until the probe worker exits) and the supervisor
/// tries to connect to it from the host.
fn listen_tcp() -> ProbeOutcome {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| Ok((l.local_addr()?.port(), l))) {
        Ok((port, listener)) => {
            std::mem::forget(listener);
            let mut o = outcome(
                "new_tcp_listener",
                "a port reachable from the host",
                Ok(format!("listening on port {port}")),
            );
            o.port = Some(port);
            o
        }
        Err(e) => outcome(
            "new_tcp_listener",
            "a port reachable from the host",
            Err(e.to_string()),
        ),
    }
}

fn raw_socket() -> ProbeOutcome {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let r = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::Icmp,
    );
    outcome(
        "raw_socket",
        "AF_INET/SOCK_RAW",
        r.map(|_| "opened".into()).map_err(|e| e.to_string()),
    )
}

fn signal(pid: u32) -> ProbeOutcome {
    // Signal 0: the permission check of a real signal, without delivering one.
    let r = nix::sys::signal::kill(Pid::from_raw(pid as i32), None);
    outcome(
        "signal_other_worker",
        format!("pid {pid}"),
        r.map(|_| "may signal it".into()).map_err(|e| e.to_string()),
    )
}

fn ptrace(pid: u32) -> ProbeOutcome {
    // SEIZE does not stop the tracee; detach at once if it worked.
    let target = Pid::from_raw(pid as i32);
    let r = nix::sys::ptrace::seize(target, nix::sys::ptrace::Options::empty());
    if r.is_ok() {
        let _ = nix::sys::ptrace::detach(target, None);
    }
    outcome(
        "ptrace_other_worker",
        format!("pid {pid}"),
        r.map(|_| "attached".into()).map_err(|e| e.to_string()),
    )
}

/// Unmounting needs CAP_SYS_ADMIN, checked after the path lookup and before
/// the mount-point check: on an existing directory that is no mount point,
/// EPERM means denied and EINVAL means the privilege was there.
fn mount() -> ProbeOutcome {
    let r = nix::mount::umount("/usr/share");
    let verdict = match r {
        Err(Errno::EPERM) => Err("EPERM".to_string()),
        Err(e) => Ok(format!("had the privilege to (un)mount ({e})")),
        Ok(()) => Ok("unmounted".into()),
    };
    outcome("mount", "umount(2)", verdict)
}

fn unshare() -> ProbeOutcome {
    use nix::sched::{unshare, CloneFlags};
    let r = unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET);
    outcome(
        "unshare_namespaces",
        "CLONE_NEWNS|CLONE_NEWNET",
        r.map(|_| "new namespaces".into())
            .map_err(|e| e.to_string()),
    )
}

fn setuid_root() -> ProbeOutcome {
    let r = nix::unistd::setuid(nix::unistd::Uid::from_raw(0));
    outcome(
        "setuid_root",
        "uid 0",
        r.map(|_| "became root".into()).map_err(|e| e.to_string()),
    )
}

/// Loading a module needs CAP_SYS_MODULE, checked before the file is read:
/// EPERM means denied; anything else means the privilege was there (an empty
/// file from /dev/null is never a loadable module).
fn load_module() -> ProbeOutcome {
    let file = match std::fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            return outcome(
                "load_kernel_module",
                "finit_module(2)",
                Err(format!("no /dev/null: {e}")),
            )
        }
    };
    let r = nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty());
    let verdict = match r {
        Err(Errno::EPERM) => Err("EPERM".to_string()),
        Err(Errno::ENOSYS) => Err("ENOSYS: this kernel cannot load modules at all".to_string()),
        Err(e) => Ok(format!("had the privilege to load modules ({e})")),
        Ok(()) => Ok("loaded".into()),
    };
    outcome("load_kernel_module", "finit_module(2)", verdict)
}

/// Asks the supervisor's egress broker for a connection to `host:port` and,
/// when one arrives, checks that it carries data (writes a line, expects an
/// answer). `escaped` here means "reached", which is the point of egress.
pub fn egress(link: &std::os::fd::OwnedFd, seq: u64, host: &str, port: u16) -> ProbeOutcome {
    use bulkhead_shared::ipc::codec::{decode_to_worker, encode_from_worker, MAX_FRAME};
    use bulkhead_shared::ipc::fds::{recv_packet, send_packet};
    use bulkhead_shared::ipc::{FromWorker, ToWorker};
    use std::io::Write;
    use std::os::fd::AsFd;
    let target = format!("{host}:{port}");
    let attempt = || -> Result<String, String> {
        let mut frame = Vec::new();
        encode_from_worker(
            &FromWorker::Connect {
                seq,
                host: host.into(),
                port,
            },
            &mut frame,
        )
        .map_err(|e| e.to_string())?;
        send_packet(link.as_fd(), &frame, &[]).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; MAX_FRAME];
        let got = recv_packet(link.as_fd(), &mut buf)
            .map_err(|e| e.to_string())?
            .ok_or("link closed")?;
        match decode_to_worker(&buf[..got.len]).map_err(|e| e.to_string())? {
            ToWorker::Connected { error: Some(e), .. } => {
                Err(format!("refused by the broker: {e}"))
            }
            ToWorker::Connected { error: None, .. } => {
                let fd = got
                    .fds
                    .into_iter()
                    .next()
                    .ok_or("no socket came with the answer")?;
                let mut stream = TcpStream::from(fd);
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.to_string())?;
                stream.write_all(b"ping\n").map_err(|e| e.to_string())?;
                let mut answer = [0u8; 64];
                let n = stream.read(&mut answer).map_err(|e| e.to_string())?;
                Ok(format!(
                    "connected through the broker; the peer answered {:?}",
                    String::from_utf8_lossy(&answer[..n])
                ))
            }
            other => Err(format!("unexpected answer {other:?}")),
        }
    };
    outcome("egress", target, attempt())
}

/// Tries to hold more threads at once than the tenant's pids limit allows,
/// stopping one past it (so it never exhausts the uid's real budget). The
/// threads wait on a channel and are released before the report goes out.
fn exhaust_tasks(limit: u32) -> ProbeOutcome {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let mut threads = Vec::new();
    let mut error = None;
    // This process already is one task.
    while threads.len() < limit as usize {
        let rx = rx.clone();
        match std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = rx.lock().map(|r| r.recv());
            }) {
            Ok(h) => threads.push(h),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let held = threads.len() + 1;
    drop(tx);
    for h in threads {
        let _ = h.join();
    }
    let target = format!("more than {limit} tasks at once");
    match error {
        Some(e) => outcome(
            "exhaust_tasks",
            target,
            Err(format!("stopped at {held} tasks: {e}")),
        ),
        None => outcome("exhaust_tasks", target, Ok(format!("held {held} tasks"))),
    }
}

/// Tries to use more memory than the tenant's limit. A child process does
/// the allocating, because the kernel's answer to a cgroup overrun is an OOM
/// kill, which would take the report with it; the child says "held" over a
/// socket only once every page of limit + 64 MiB is touched.
fn exhaust_memory(limit: u64) -> ProbeOutcome {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let target = format!("more than {} MiB", limit >> 20);
    let (mut parent_end, mut child_end) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return outcome("exhaust_memory", target, Err(format!("no socketpair: {e}"))),
    };
    let want = (limit + (64 << 20)) as usize;
    match fork_probe_child() {
        Err(e) => return outcome("exhaust_memory", target, Err(format!("fork: {e}"))),
        Ok(0) => {
            drop(parent_end);
            let mut block: Vec<u8> = Vec::new();
            let verdict: &[u8] = if block.try_reserve_exact(want).is_ok() {
                // Touch every page so the memory is really used (and charged).
                let spare = block.spare_capacity_mut();
                for i in (0..want).step_by(4096) {
                    spare[i].write(1);
                }
                b"held"
            } else {
                b"refused"
            };
            let _ = child_end.write_all(verdict);
            std::process::exit(0);
        }
        Ok(_) => drop(child_end),
    }
    let _ = parent_end.set_read_timeout(Some(Duration::from_secs(20)));
    let mut answer = Vec::new();
    let _ = parent_end.read_to_end(&mut answer);
    let r = match answer.as_slice() {
        b"held" => Ok(format!("held {} MiB", want >> 20)),
        b"refused" => Err("the allocation was refused (RLIMIT_DATA)".to_string()),
        _ => Err("the allocating process was killed (the memory cgroup's OOM killer)".to_string()),
    };
    outcome("exhaust_memory", target, r)
}

/// `fork(2)` for the memory probe; returns 0 in the child.
#[allow(unsafe_code)] // fork itself; the probe worker has one thread here
fn fork_probe_child() -> nix::Result<i32> {
    // SAFETY: a probe worker runs its probes on its only thread (the
    // threads of exhaust_tasks are joined before this), so the child inherits
    // no lock held by another thread; it only allocates, writes and exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(0),
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}
