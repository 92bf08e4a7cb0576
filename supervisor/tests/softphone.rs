//! A real softphone (baresip, Debian's `baresip-core`) calls a tenant
//! through the router: the call is answered, carries RTP for a second of
//! audio from a file, is hung up by the phone, and is recorded as completed.

mod common;

use std::process::Command;

use common::*;

/// baresip needs a non-loopback address to start its media (it skips
/// `lo`). In the network namespace `scripts/test` made, where `lo` is the
/// only interface, give it one end of a veth pair (this kernel has no dummy
/// interfaces) with a benchmarking-range address and no peer outside the
/// namespace: packets to it stay on this host like any local address.
/// Outside such a namespace this does nothing (a host has interfaces of its
/// own).
fn give_baresip_an_interface() {
    if interfaces("self").iter().any(|i| i != "lo") || !nix::unistd::geteuid().is_root() {
        return;
    }
    for args in [
        &[
            "link", "add", "bh-soft0", "type", "veth", "peer", "name", "bh-soft1",
        ][..],
        &["addr", "add", "198.18.0.1/32", "dev", "bh-soft0"],
        &["link", "set", "bh-soft1", "up"],
        &["link", "set", "bh-soft0", "up"],
        // baresip finds its address from the default route. Its peer end
        // forwards nothing (forwarding is off in a new namespace).
        &["route", "add", "default", "dev", "bh-soft0"],
    ] {
        let _ = Command::new("ip").args(args).status();
    }
}

#[test]
fn baresip_calls_through_the_router_and_the_call_is_recorded() {
    give_baresip_an_interface();
    let sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &["+15550100"]);
    let conf = sup.dir.path().join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let wav = conf.join("speech.wav");
    // One second of 8 kHz 16-bit mono silence.
    std::fs::write(&wav, bulkhead_voice::speech::openai::wav(&[0; 8000])).unwrap();
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:0\nsip_transports udp\n\
             audio_player aufile,/dev/null\naudio_alert aufile,/dev/null\naudio_source aufile,{}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module_app account.so\nmodule_app menu.so\n",
            wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        "<sip:tester@127.0.0.1>;regint=0;audio_codecs=PCMU\n",
    )
    .unwrap();
    std::fs::write(conf.join("contacts"), "").unwrap();

    // The phone hangs up when its file ends; -t is a backstop.
    let out = Command::new("baresip")
        .arg("-f")
        .arg(&conf)
        .arg("-4")
        .args(["-e", &format!("/dial sip:+15550100@{}", sup.sip), "-t", "4"])
        .output()
        .expect("baresip is installed (scripts/test installs baresip-core)");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Call established"), "{log}\n{}", sup.log());
    assert!(log.contains("terminated"), "the phone hung up: {log}");

    let port = t["http_port"].as_u64().unwrap() as u16;
    let calls = settled_calls(port, t["token"].as_str().unwrap());
    let call = calls
        .iter()
        .find(|c| c["from"] == "tester")
        .unwrap_or_else(|| panic!("no record of the softphone's call: {calls:?}"));
    assert_eq!(call["outcome"], "completed", "{call}");
    assert!(call["duration_ms"].as_u64().unwrap() >= 500, "{call}");
}
