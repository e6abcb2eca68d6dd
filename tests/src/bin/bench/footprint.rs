//! d. Footprint: the largest config, file sizes, guest writes.

use super::*;

/// The largest supported config (MAX_SERVICES × MAX_SERVERS = 8 × 64) as
/// TOML, from the factory file (globals and service settings kept).
pub(super) fn big_config(factory: &str) -> Res<String> {
    let strip = |l: &str| -> String {
        // Drop a trailing comment unless the '#' is inside a string.
        let mut quotes = 0;
        for (i, ch) in l.char_indices() {
            match ch {
                '"' => quotes += 1,
                '#' if quotes % 2 == 0 => return l[..i].trim_end().to_owned(),
                _ => {}
            }
        }
        l.trim_end().to_owned()
    };
    let s = factory
        .find("[[services]]")
        .ok_or("factory.toml has no [[services]]")?;
    let e = factory
        .find("[[services.servers]]")
        .ok_or("factory.toml has no [[services.servers]]")?;
    let keep = |t: &str| -> Vec<String> {
        t.lines()
            .map(strip)
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    let mut out = keep(&factory[..s]);
    let svc = keep(&factory[s..e]);
    for k in 0..8u8 {
        for l in &svc {
            let l = if l.starts_with("name ") {
                format!("name = \"sip{k}\"")
            } else if l.starts_with("vip ") {
                format!("vip = \"203.0.113.{}\"", 10 + k)
            } else {
                l.clone()
            };
            out.push(l);
        }
        for i in 0..64u8 {
            out.push("[[services.servers]]".into());
            out.push(format!("address = \"198.51.100.{}\"", 11 + i));
            out.push("port = 5060".into());
            out.push("weight = 1".into());
        }
    }
    Ok(out.join("\n") + "\n")
}

/// Writes `text` to `path` in the guest, a few KiB per shell line.
pub(super) fn guest_write(lv: &mut LabVm, path: &str, text: &str) -> Res<()> {
    guest(lv, &format!(": > {path}"), Duration::from_secs(30))?;
    let mut chunk = String::new();
    for l in text.lines() {
        if l.contains('\'') {
            return Err(format!("line with a quote cannot be sent: {l}"));
        }
        chunk.push_str(&format!(" '{l}'"));
        if chunk.len() > 2500 {
            guest(
                lv,
                &format!("printf '%s\\n'{chunk} >> {path}"),
                Duration::from_secs(60),
            )?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        guest(
            lv,
            &format!("printf '%s\\n'{chunk} >> {path}"),
            Duration::from_secs(60),
        )?;
    }
    Ok(())
}

pub(super) fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

pub(super) fn gzip_size(p: &Path) -> Option<u64> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -6 -n -c '{}' | wc -c", p.display()))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

pub(super) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}
