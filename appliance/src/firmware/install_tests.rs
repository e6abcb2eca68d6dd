//! Installs from files and from an HTTP server on 127.0.0.1 in this process: a good bundle,
//! 404, a cut connection, an oversized body, a stalled server, a refused port, a bad
//! signature. Every failure must leave the boot disk byte for byte as it was.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::firmware::fetch::{FetchError, Options};
use crate::firmware::keys::{key_files, Keyring};
use crate::firmware::slots::Slots;
use crate::firmware::version::Version;

/// Installs take the process-wide firmware lock: one test at a time.
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

fn kernel() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

pub(crate) fn bundle_signed_by(seed: u8) -> Vec<u8> {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    bundle::build(
        "99.1.0",
        "test-board",
        "t",
        &[("kernel", &kernel()), ("rootfs", &[5u8; 200_000])],
        Some(&sk),
    )
    .unwrap()
}

/// A boot disk with slot A = 0.1.0 booted and good.
pub(crate) fn disk(dir: &std::path::Path) -> Layout {
    let l = Layout {
        disk: dir.join("disk.img").display().to_string(),
        slot_mib: 2,
        kernel_mib: 1,
        bootloader: Default::default(),
    };
    let mut part = vec![0u8; 4096];
    part[1024..2048].copy_from_slice(&crate::firmware::grubenv::Env::default().encode().unwrap());
    disk::make_disk(
        &l.disk,
        &l,
        &[0; 512],
        &[0; 512],
        &part,
        b"k",
        b"r",
        |k, r| slots::initial_env("0.1.0", k, r).map_err(|e| e.to_string()),
    )
    .unwrap();
    l
}

fn ring() -> Keyring {
    Keyring::parse(&key_files(&[1; 32], "test").1, "ring").unwrap()
}

fn target(layout: Layout, ring: &Keyring) -> Target<'_> {
    Target {
        layout,
        booted: Slot::A,
        policy: Policy {
            keyring: ring,
            keyring_path: "/etc/appliance/firmware-keys",
            board: "test-board",
            running: Version::parse("0.1.0").unwrap(),
            force: false,
        },
        fetch: quick(),
        activate: true,
    }
}

fn quick() -> Options {
    Options {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(20),
        ..Options::default()
    }
}

/// A tiny HTTP/1.1 server: each path is one behaviour. Serves until the test process ends.
fn serve(good: Vec<u8>, bad_sig: Vec<u8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming().take(64) {
            let Ok(c) = c else { continue };
            let (good, bad_sig) = (good.clone(), bad_sig.clone());
            std::thread::spawn(move || answer(c, &good, &bad_sig));
        }
    });
    base
}

fn answer(mut c: TcpStream, good: &[u8], bad_sig: &[u8]) {
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let ok = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let _ = match path.as_str() {
        "/good.bundle" => c
            .write_all(ok(good.len()).as_bytes())
            .and_then(|_| c.write_all(good)),
        "/badsig.bundle" => c
            .write_all(ok(bad_sig.len()).as_bytes())
            .and_then(|_| c.write_all(bad_sig)),
        "/cut.bundle" => c
            .write_all(ok(good.len()).as_bytes())
            .and_then(|_| c.write_all(&good[..good.len() / 2])),
        "/huge.bundle" => c.write_all(ok(3 << 20).as_bytes()),
        "/endless" => c
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .and_then(|_| {
                for _ in 0..64 {
                    c.write_all(&[0u8; 65536])?;
                }
                Ok(())
            }),
        "/stall.bundle" => c
            .write_all(ok(good.len()).as_bytes())
            .and_then(|_| c.write_all(&good[..1000]))
            .map(|_| std::thread::sleep(Duration::from_secs(4))),
        "/silent" => {
            std::thread::sleep(Duration::from_secs(4));
            Ok(())
        }
        _ => {
            c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    };
}

fn disk_bytes(l: &Layout) -> Vec<u8> {
    std::fs::read(&l.disk).unwrap()
}

#[test]
fn url_install_writes_the_other_slot_and_every_failure_changes_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let layout = disk(dir.path());
    let ring = ring();
    let t = target(layout.clone(), &ring);
    let base = serve(bundle_signed_by(1), bundle_signed_by(9));
    let before = disk_bytes(&layout);
    for (path, want) in [
        ("/missing.bundle", "answered HTTP 404"),
        ("/cut.bundle", "stopped after"),
        ("/huge.bundle", "larger than"),
        ("/stall.bundle", "timed out after 1 s"),
        ("/silent", "timed out after 1 s"),
        ("/badsig.bundle", "bad signature"),
    ] {
        let src = Source::parse(&format!("{base}{path}"));
        let t0 = std::time::Instant::now();
        let e = install(&src, &t, &mut |_| {}).unwrap_err();
        assert!(e.contains(want), "{path}: {e}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{path} took {:?}",
            t0.elapsed()
        );
        assert!(disk_bytes(&layout) == before, "{path} changed the disk");
    }
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x.bundle", closed.local_addr().unwrap());
    drop(closed);
    let e = install(&Source::parse(&url), &t, &mut |_| {}).unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
    assert!(disk_bytes(&layout) == before);

    let mut seen = Vec::new();
    let done = install(
        &Source::parse(&format!("{base}/good.bundle")),
        &t,
        &mut |p| seen.push(p.clone()),
    )
    .unwrap();
    assert_eq!((done.version.as_str(), done.slot), ("99.1.0", Slot::B));
    let st = Slots::from_env(&Disk::open(layout.clone()).unwrap().read_env().unwrap());
    assert_eq!(
        (st.primary, st.b.version.as_str(), st.b.trial),
        (Slot::B, "99.1.0", true)
    );
    let k = Disk::open(layout)
        .unwrap()
        .hash_area(Slot::B, "kernel", kernel().len() as u64);
    assert_eq!(k.unwrap(), bundle::sha256_hex(&kernel()));
    // Both passes reported progress, ending at 100 %.
    let steps: Vec<_> = seen
        .iter()
        .filter(|p| matches!(p, Progress::Step(_)))
        .collect();
    assert_eq!(steps.len(), 2, "{seen:?}");
    let total = done.bytes;
    let full = seen
        .iter()
        .filter(|p| **p == Progress::Bytes { done: total, total })
        .count();
    assert_eq!(full, 2, "{seen:?}");
}

#[test]
fn a_file_install_and_a_missing_file() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let layout = disk(dir.path());
    let ring = ring();
    let t = target(layout.clone(), &ring);
    let before = disk_bytes(&layout);
    let missing = dir.path().join("nope.bundle").display().to_string();
    let e = install(&Source::parse(&missing), &t, &mut |_| {}).unwrap_err();
    assert!(
        e.contains("nope.bundle") && e.contains("No such file"),
        "{e}"
    );
    assert!(disk_bytes(&layout) == before);
    let f = dir.path().join("good.bundle");
    std::fs::write(&f, bundle_signed_by(1)).unwrap();
    let done = install(&Source::parse(&f.display().to_string()), &t, &mut |_| {}).unwrap();
    assert_eq!(done.slot, Slot::B);
}

#[test]
fn a_body_without_length_is_cut_at_the_cap() {
    let base = serve(Vec::new(), Vec::new());
    let o = Options {
        max_bytes: 1 << 20,
        ..quick()
    };
    let mut d = fetch::get(&format!("{base}/endless"), &o).unwrap();
    assert_eq!(d.len, None);
    let e = std::io::copy(&mut d, &mut std::io::sink()).unwrap_err();
    let fe = e.get_ref().and_then(|i| i.downcast_ref::<FetchError>());
    assert!(
        matches!(fe, Some(FetchError::TooBig { cap, .. }) if *cap == 1 << 20),
        "{e}"
    );
}

#[test]
fn urls_are_told_from_paths_and_bad_ones_refused() {
    assert_eq!(
        Source::parse("HTTP://h/x"),
        Source::Url("HTTP://h/x".into())
    );
    assert_eq!(Source::parse("/dev/vdg"), Source::File("/dev/vdg".into()));
    assert_eq!(Source::parse("httpfoo"), Source::File("httpfoo".into()));
    let e = fetch::get("http://h/a b", &quick()).unwrap_err();
    assert!(matches!(e, FetchError::BadUrl(_)), "{e}");
}
