//! Store tests: layout, golden vector, power-cut matrix, MTD semantics.

use super::backend::{FileBackend, MtdBackend, FILE_SLOT_SIZE};
use super::record::{self, pick};
use super::sim::{SimDisk, SimFlash, SimMedium};
use super::*;
use crate::config::model::*;
use crate::config::{from_toml, validate};
use record::HaSettingsV1;

fn cfg(servers: u8, host: &str) -> Config {
    let mut c = Config::builtin_default();
    c.hostname = bounded(host);
    c.services[0].servers.clear();
    for i in 0..servers {
        let _ = c.services[0].servers.push(RealServer {
            address: std::net::Ipv4Addr::new(198, 51, 100, 20 + i),
            port: 5060,
            weight: 1 + u32::from(i),
            state: AdminState::Enabled,
        });
    }
    c
}

/// Opens a store over a simulated medium.
type Opener<'a> = &'a dyn Fn(&SimMedium) -> Store;

fn file_sim() -> SimMedium {
    SimMedium::new(2 * FILE_SLOT_SIZE, 4096, 0xFF)
}

fn file_store(m: &SimMedium) -> Store {
    Store::with_backend(Box::new(FileBackend::with_disk(SimDisk(m.clone()))))
}

fn flash_sim(erase: u32, blocks: usize) -> SimMedium {
    SimMedium::new(erase as usize * blocks, erase, 0xFF)
}

fn flash_store(m: &SimMedium) -> Store {
    Store::with_backend(Box::new(
        MtdBackend::new(SimFlash(m.clone())).expect("sim flash geometry"),
    ))
}

#[test]
fn empty_store_gives_factory_defaults() {
    let m = file_sim();
    let factory = cfg(1, "factory");
    let l = file_store(&m).with_factory(factory.clone()).load().unwrap();
    assert_eq!(l.origin, Origin::Empty);
    assert_eq!(l.config, factory);
    assert_eq!(l.generation, 0);
    // A never-written (zero-filled) block device counts as empty too.
    let z = SimMedium::new(2 * FILE_SLOT_SIZE, 4096, 0x00);
    assert_eq!(file_store(&z).load().unwrap().origin, Origin::Empty);
}

#[test]
fn save_alternates_slots_and_load_takes_newest() {
    let m = file_sim();
    let mut s = file_store(&m);
    let (a, b, c) = (cfg(1, "a"), cfg(2, "b"), cfg(3, "c"));
    assert_eq!(s.save(&a).unwrap(), 1);
    let l = s.load().unwrap();
    assert_eq!((l.origin, l.generation, &l.config), (Origin::SlotA, 1, &a));
    assert_eq!(s.save(&b).unwrap(), 2);
    let l = s.load().unwrap();
    assert_eq!((l.origin, l.generation, &l.config), (Origin::SlotB, 2, &b));
    assert_eq!(s.save(&c).unwrap(), 3);
    let l = file_store(&m).load().unwrap();
    assert_eq!((l.origin, l.generation, &l.config), (Origin::SlotA, 3, &c));
    // Slot B still holds generation 2 (the previous config).
    let img = m.image();
    match record::decode_slot(&img[FILE_SLOT_SIZE..]) {
        SlotState::Valid { generation, config } => assert_eq!((generation, *config), (2, b)),
        other => panic!("slot B: {other:?}"),
    }
}

#[test]
fn both_corrupt_reports_and_leaves_slots_untouched() {
    let m = file_sim();
    let mut s = file_store(&m);
    s.save(&cfg(1, "a")).unwrap();
    s.save(&cfg(2, "b")).unwrap();
    let mut img = m.image();
    img[30] ^= 1;
    img[FILE_SLOT_SIZE + 30] ^= 1;
    m.set_image(&img);
    let factory = cfg(3, "factory");
    let l = file_store(&m).with_factory(factory.clone()).load().unwrap();
    assert_eq!(l.origin, Origin::BothCorrupt);
    assert_eq!(l.config, factory);
    assert!(
        l.notes.iter().all(|n| n.contains("CRC mismatch")),
        "{:?}",
        l.notes
    );
    assert_eq!(m.image(), img, "load must not touch corrupt slots");
    // The next save repairs one slot.
    let mut s = file_store(&m);
    let g = s.save(&cfg(4, "d")).unwrap();
    assert_eq!(g, 1);
    assert_eq!(s.load().unwrap().config, cfg(4, "d"));
}

#[test]
fn erase_is_factory_reset() {
    let cases: [(SimMedium, Opener); 2] = [
        (file_sim(), &file_store),
        (flash_sim(4096, 16), &flash_store),
    ];
    for (m, open) in cases {
        let mut s = open(&m);
        s.save(&cfg(1, "a")).unwrap();
        s.save(&cfg(2, "b")).unwrap();
        s.erase().unwrap();
        assert_eq!(s.load().unwrap().origin, Origin::Empty);
    }
}

#[test]
fn largest_config_fits_a_slot() {
    let big = largest_config();
    let rec = encode_record(&big, u64::MAX).expect("largest config encodes");
    eprintln!(
        "largest record: {} bytes (payload bound {MAX_PAYLOAD}, record bound {MAX_RECORD}, file slot {FILE_SLOT_SIZE})",
        rec.len()
    );
    assert!(rec.len() <= MAX_RECORD);
    const { assert!(MAX_RECORD <= FILE_SLOT_SIZE) };
    // And it survives a store round trip on every backend.
    let cases: [(SimMedium, Opener); 3] = [
        (file_sim(), &file_store),
        (flash_sim(4096, 16), &flash_store),
        (flash_sim(65536, 2), &flash_store),
    ];
    for (m, open) in cases {
        let mut s = open(&m);
        s.save(&big).unwrap();
        assert_eq!(s.load().unwrap().config, big);
    }
}

#[test]
fn wrong_spec_and_tiny_flash_are_explained() {
    let e = Store::open("disk:/x").unwrap_err().to_string();
    assert!(
        e.contains("use file:/path/to/config.bin or mtd:/dev/mtdN"),
        "{e}"
    );
    let e = Store::open("mtd:/nonexistent/mtd9")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot open config store mtd:/nonexistent/mtd9"),
        "{e}"
    );
    let m = flash_sim(4096, 4);
    let e = MtdBackend::new(SimFlash(m)).unwrap_err().to_string();
    assert!(e.contains("too small") && e.contains("16384 bytes"), "{e}");
}

#[test]
fn unreadable_medium_is_an_error_not_factory_defaults() {
    let d = tempfile::tempdir().unwrap();
    // A directory cannot be read as a store file.
    let mut s = Store::open(&format!("file:{}", d.path().display())).unwrap();
    let e = s.load().unwrap_err().to_string();
    assert!(e.contains("read of slot A failed"), "{e}");
}

#[test]
fn file_backend_on_real_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub/config.bin");
    let spec = format!("file:{}", p.display());
    let mut s = Store::open(&spec).unwrap();
    assert_eq!(
        s.load().unwrap().origin,
        Origin::Empty,
        "missing file = empty"
    );
    assert!(!p.exists(), "load must not create the file");
    s.save(&cfg(1, "a")).unwrap();
    s.save(&cfg(2, "b")).unwrap();
    let l = Store::open(&spec).unwrap().load().unwrap();
    assert_eq!((l.origin, l.config), (Origin::SlotB, cfg(2, "b")));
    Store::open(&spec).unwrap().erase().unwrap();
    assert_eq!(
        Store::open(&spec).unwrap().load().unwrap().origin,
        Origin::Empty
    );
}

// ---- golden vectors ----------------------------------------------------------

const GOLDEN_BIN: &[u8] = include_bytes!("../../tests/data/golden-v1.bin");
const GOLDEN_TOML: &str = include_str!("../../tests/data/golden-v1.toml");
const GOLDEN_GENERATION: u64 = 7;

/// The V1 golden config in its frozen V1 shape.
fn golden_v1() -> ConfigV1 {
    toml::from_str(GOLDEN_TOML).expect("golden v1 toml")
}

#[test]
fn golden_v1_record_still_loads() {
    let want: Config = golden_v1().into();
    match record::decode_slot(GOLDEN_BIN) {
        SlotState::Valid { generation, config } => {
            assert_eq!(generation, GOLDEN_GENERATION);
            assert_eq!(*config, want);
        }
        other => panic!("golden V1 record no longer loads: {other:?}"),
    }
    // Through a whole store, in slot B.
    let m = file_sim();
    let mut img = m.image();
    img[FILE_SLOT_SIZE..FILE_SLOT_SIZE + GOLDEN_BIN.len()].copy_from_slice(GOLDEN_BIN);
    m.set_image(&img);
    let l = file_store(&m).load().unwrap();
    assert_eq!((l.origin, l.generation, l.config), (Origin::SlotB, 7, want));
}

#[test]
fn golden_v1_encoding_is_stable() {
    // If this fails the frozen V1 shape (ConfigV1 and the types it shares) changed:
    // freeze the old shape of what changed and add the next envelope instead.
    let rec = record::encode_envelope(&Envelope::V1(golden_v1()), GOLDEN_GENERATION).unwrap();
    assert_eq!(rec, GOLDEN_BIN);
}

const GOLDEN_V2_BIN: &[u8] = include_bytes!("../../tests/data/golden-v2.bin");
const GOLDEN_V2_TOML: &str = include_str!("../../tests/data/golden-v2.toml");
const GOLDEN_V2_GENERATION: u64 = 8;

#[test]
fn golden_v2_record_loads() {
    let want = from_toml(GOLDEN_V2_TOML).expect("golden v2 toml");
    assert!(want.ha.enabled && want.ha.vrid == 52, "{:?}", want.ha);
    match record::decode_slot(GOLDEN_V2_BIN) {
        SlotState::Valid { generation, config } => {
            assert_eq!(generation, GOLDEN_V2_GENERATION);
            assert_eq!(*config, want);
        }
        other => panic!("golden V2 record no longer loads: {other:?}"),
    }
    let m = file_sim();
    let mut img = m.image();
    img[..GOLDEN_V2_BIN.len()].copy_from_slice(GOLDEN_V2_BIN);
    m.set_image(&img);
    let l = file_store(&m).load().unwrap();
    assert_eq!((l.origin, l.generation, l.config), (Origin::SlotA, 8, want));
}

/// The V2 golden config in its frozen V2 shape.
fn golden_v2() -> ConfigV2 {
    toml::from_str(GOLDEN_V2_TOML).expect("golden v2 toml")
}

#[test]
fn golden_v2_encoding_is_stable() {
    // If this fails the frozen V2 shape (ConfigV2 and the types it shares) changed:
    // freeze the old shape of what changed and add the next envelope instead.
    let v2 = golden_v2();
    let r = validate(&Config::from(v2.clone()));
    assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:#?}");
    let rec = record::encode_envelope(&Envelope::V2(v2), GOLDEN_V2_GENERATION).unwrap();
    assert_eq!(rec, GOLDEN_V2_BIN);
}

#[test]
fn current_records_use_the_newest_envelope_and_round_trip() {
    let want = from_toml(GOLDEN_V2_TOML).expect("golden v2 toml");
    let rec = encode_record(&want, 9).unwrap();
    let payload = &rec[HEADER_LEN..rec.len() - CRC_LEN];
    assert!(matches!(
        postcard::from_bytes::<Envelope>(payload),
        Ok(Envelope::V3(_))
    ));
    match record::decode_slot(&rec) {
        SlotState::Valid { generation, config } => {
            assert_eq!((generation, *config), (9, want));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v1_record_migrates_to_the_expected_current_config() {
    let l = match record::decode_slot(GOLDEN_BIN) {
        SlotState::Valid { config, .. } => *config,
        other => panic!("{other:?}"),
    };
    // Everything outside [ha] is carried over unchanged ...
    let v1 = golden_v1();
    assert_eq!(l.hostname, v1.hostname);
    assert_eq!((&l.wan, &l.lan), (&v1.wan, &v1.lan));
    assert_eq!(l.policy_routing, v1.policy_routing);
    assert_eq!(l.services, v1.services);
    assert_eq!(l.leds, v1.leds);
    assert_eq!((&l.console, &l.watchdog), (&v1.console, &v1.watchdog));
    // ... and [ha] (enabled=false, vrid 51, priority 100, peer 198.51.100.2 on LAN,
    // sync_interface eth1) becomes: off, same VRID/priority, the peer as LAN peer.
    let want = HaSettings {
        enabled: false,
        vrid: 51,
        priority: 100,
        advert_interval_cs: HA_DEFAULT_ADVERT_CS,
        preempt: false,
        preempt_delay_s: HA_DEFAULT_PREEMPT_DELAY_S,
        lan_gateway: None,
        peer_wan: None,
        peer_lan: Some(std::net::Ipv4Addr::new(198, 51, 100, 2)),
        sync_interface: bounded("eth1"),
    };
    assert_eq!(l.ha, want);
    assert!(validate(&l).is_ok(), "{:#?}", validate(&l));
    // A migrated record saves as the current envelope and loads back the same.
    let m = file_sim();
    let mut s = file_store(&m);
    s.save(&l).unwrap();
    let img = m.image();
    let len = encode_record(&l, 1).unwrap().len();
    let payload = &img[HEADER_LEN..len - CRC_LEN];
    assert!(matches!(
        postcard::from_bytes::<Envelope>(payload),
        Ok(Envelope::V3(_))
    ));
    assert_eq!(s.load().unwrap().config, l);
}

#[test]
fn v1_migration_fills_unset_ha_fields_and_places_the_peer() {
    let base = golden_v1();
    let migrate = |ha: HaSettingsV1| -> HaSettings {
        let mut v = base.clone();
        v.ha = ha;
        Config::from(v).ha
    };
    // The factory config of V1 firmware: vrid 0, priority 0, nothing else.
    let h = migrate(HaSettingsV1::default());
    assert_eq!(h, HaSettings::default());
    // Enabled is never carried over; 255 (address owner) is not ours to use.
    let h = migrate(HaSettingsV1 {
        enabled: true,
        vrid: 7,
        priority: 255,
        peer: Some("203.0.113.3".parse().unwrap()),
        sync_interface: bounded("eth2"),
    });
    assert!(!h.enabled);
    assert_eq!((h.vrid, h.priority), (7, HA_DEFAULT_PRIORITY));
    assert_eq!(
        (h.peer_wan, h.peer_lan),
        (Some("203.0.113.3".parse().unwrap()), None)
    );
    assert_eq!(h.sync_interface.as_str(), "eth2");
    // A peer on neither subnet (or the box's own address) is dropped.
    for p in ["192.0.2.9", "198.51.100.1", "203.0.113.2"] {
        let h = migrate(HaSettingsV1 {
            peer: Some(p.parse().unwrap()),
            ..Default::default()
        });
        assert_eq!((h.peer_wan, h.peer_lan), (None, None), "{p}");
    }
}

#[test]
fn a_record_from_newer_firmware_is_reported_not_loaded() {
    // Envelope variant index 3 (a future V4) with the current config after it.
    let c = Config::builtin_default();
    let mut rec = encode_record(&c, 3).unwrap();
    rec[HEADER_LEN] = 3;
    let end = rec.len() - CRC_LEN;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&rec[..end]);
    rec[end..].copy_from_slice(&crc.to_le_bytes());
    match record::decode_slot(&rec) {
        SlotState::Corrupt(why) => assert!(why.contains("newer firmware"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ---- power-cut matrix --------------------------------------------------------

/// Outcome checker shared by all matrix cases.
fn assert_prev_or_new(
    l: &Loaded,
    prev: &Config,
    new: &Config,
    must_be: Option<&Config>,
    ctx: &str,
) {
    assert!(
        matches!(l.origin, Origin::SlotA | Origin::SlotB),
        "{ctx}: origin {:?}, notes {:?}",
        l.origin,
        l.notes
    );
    assert!(
        l.config == *prev || l.config == *new,
        "{ctx}: garbage config loaded"
    );
    if let Some(m) = must_be {
        assert!(
            l.config == *m,
            "{ctx}: wrong config (generation {})",
            l.generation
        );
    }
}

/// Decode two slot images the way `Store::load` does.
fn pick_images(a: &[u8], b: &[u8]) -> Loaded {
    pick(
        [record::decode_slot(a), record::decode_slot(b)],
        &Config::builtin_default(),
    )
}

struct Matrix {
    cases: usize,
    flips: usize,
}

/// Save `history` in order, then cut the save of `new` after every byte count.
/// With `flips`, additionally flip every bit of the target slot's record area at every cut.
fn run_matrix(
    m: &SimMedium,
    open: Opener,
    history: &[Config],
    new: &Config,
    flips: bool,
) -> Matrix {
    let mut s = open(m);
    for c in history {
        s.save(c).unwrap();
    }
    let prev = history.last().expect("history");
    let snapshot = m.image();
    let slot = s.slot_size();
    m.reset_counters();
    s.save(new).unwrap();
    let total = m.written();
    let after = m.image();
    // The slot the save wrote: the one whose bytes changed.
    let base = if snapshot[..slot] != after[..slot] {
        0
    } else {
        slot
    };
    assert_ne!(snapshot[base..base + slot], after[base..base + slot]);
    let other = if base == 0 { slot } else { 0 };
    let mut out = Matrix { cases: 0, flips: 0 };
    for n in 0..=total {
        m.set_image(&snapshot);
        m.set_budget(Some(n));
        let r = open(m).save(new);
        m.set_budget(None);
        let ctx = format!("cut after {n}/{total} bytes");
        if n < total {
            assert!(r.is_err(), "{ctx}: save reported success");
        } else {
            r.unwrap();
        }
        let l = open(m)
            .load()
            .unwrap_or_else(|e| panic!("{ctx}: load error {e}"));
        let must = if n < total { prev } else { new };
        assert_prev_or_new(&l, prev, new, Some(must), &ctx);
        out.cases += 1;
        if flips {
            let img = m.image();
            let other_img = &img[other..other + slot];
            let other_state = record::decode_slot(other_img);
            let mut t = img[base..base + slot].to_vec();
            let span = (total + 8).min(slot);
            for bit in 0..span * 8 {
                t[bit / 8] ^= 1 << (bit % 8);
                let states = if base == 0 {
                    [record::decode_slot(&t), other_state.clone()]
                } else {
                    [other_state.clone(), record::decode_slot(&t)]
                };
                let l = pick(states, &Config::builtin_default());
                assert_prev_or_new(&l, prev, new, None, &format!("{ctx}, bit {bit} flipped"));
                t[bit / 8] ^= 1 << (bit % 8);
                out.flips += 1;
            }
        }
    }
    // Power restored: a normal save still works after the matrix.
    m.set_image(&snapshot);
    assert_eq!(
        open(m).save(new).unwrap(),
        open(m).load().unwrap().generation
    );
    out
}

#[test]
fn power_cut_matrix_file_erased_rest() {
    // Target slot B is erased (only one earlier save): the unwritten rest is 0xFF.
    let m = file_sim();
    let r = run_matrix(&m, &file_store, &[cfg(3, "prev")], &cfg(4, "new"), true);
    eprintln!("file/erased: {} cut points, {} bit flips", r.cases, r.flips);
}

#[test]
fn power_cut_matrix_file_stale_longer() {
    // Target slot A holds an older, longer record: the unwritten rest is stale bytes.
    let m = file_sim();
    let r = run_matrix(
        &m,
        &file_store,
        &[cfg(12, "old-long"), cfg(3, "prev")],
        &cfg(2, "new"),
        true,
    );
    eprintln!("file/stale: {} cut points, {} bit flips", r.cases, r.flips);
}

#[test]
fn power_cut_matrix_file_stale_identical_content() {
    // Worst case for stale bytes: the old record in the target slot has the same config as the new one.
    let m = file_sim();
    let same = cfg(3, "same");
    let r = run_matrix(
        &m,
        &file_store,
        &[same.clone(), cfg(1, "prev")],
        &same,
        true,
    );
    eprintln!(
        "file/stale-identical: {} cut points, {} bit flips",
        r.cases, r.flips
    );
}

#[test]
fn power_cut_matrix_mtd_small_erase_blocks() {
    let m = flash_sim(4096, 12);
    let r = run_matrix(
        &m,
        &flash_store,
        &[cfg(12, "old"), cfg(3, "prev")],
        &cfg(5, "new"),
        true,
    );
    assert_eq!(
        m.violations(),
        0,
        "the MTD backend programmed bits without erasing"
    );
    eprintln!("mtd/4KiB: {} cut points, {} bit flips", r.cases, r.flips);
}

#[test]
fn power_cut_matrix_mtd_64k_blocks() {
    let m = flash_sim(65536, 2);
    let r = run_matrix(&m, &flash_store, &[cfg(2, "prev")], &cfg(6, "new"), false);
    assert_eq!(m.violations(), 0);
    eprintln!("mtd/64KiB: {} cut points", r.cases);
}

#[test]
fn bit_flips_after_complete_save_every_bit_both_slots() {
    let m = file_sim();
    let mut s = file_store(&m);
    let (prev, new) = (cfg(3, "prev"), cfg(4, "new"));
    s.save(&prev).unwrap();
    s.save(&new).unwrap();
    let img = m.image();
    let (a, b) = img.split_at(FILE_SLOT_SIZE);
    let len_a = encode_record(&prev, 1).unwrap().len() + 8;
    let len_b = encode_record(&new, 2).unwrap().len() + 8;
    let mut flips = 0;
    let mut ta = a.to_vec();
    for bit in 0..len_a * 8 {
        ta[bit / 8] ^= 1 << (bit % 8);
        let l = pick_images(&ta, b);
        assert_prev_or_new(&l, &prev, &new, Some(&new), &format!("slot A bit {bit}"));
        ta[bit / 8] ^= 1 << (bit % 8);
        flips += 1;
    }
    let mut tb = b.to_vec();
    for bit in 0..len_b * 8 {
        tb[bit / 8] ^= 1 << (bit % 8);
        let l = pick_images(a, &tb);
        // A flip inside B's record invalidates it (prev wins); past its end it is ignored.
        let must = if bit / 8 < len_b - 8 { &prev } else { &new };
        assert_prev_or_new(&l, &prev, &new, Some(must), &format!("slot B bit {bit}"));
        tb[bit / 8] ^= 1 << (bit % 8);
        flips += 1;
    }
    eprintln!("complete save: {flips} single-bit flips checked");
}

#[test]
fn interrupted_erase_keeps_previous() {
    let m = flash_sim(4096, 12);
    let mut s = flash_store(&m);
    let prev = cfg(3, "prev");
    s.save(&cfg(5, "old")).unwrap();
    s.save(&prev).unwrap();
    let snapshot = m.image();
    // A cut before the erase (budget 0 blocks erase in the sim) and one after.
    m.set_budget(Some(0));
    assert!(flash_store(&m).save(&cfg(1, "new")).is_err());
    m.set_budget(None);
    assert_eq!(flash_store(&m).load().unwrap().config, prev);
    // Half-erased target slot: first erase block 0xFF, the rest old bytes.
    let mut img = snapshot.clone();
    img[..4096].fill(0xFF);
    m.set_image(&img);
    let l = flash_store(&m).load().unwrap();
    assert_eq!(l.config, prev);
}

#[test]
fn mtd_backend_obeys_flash_rules() {
    let m = flash_sim(4096, 12);
    let mut s = flash_store(&m);
    assert_eq!(
        s.slot_size(),
        20480,
        "5 x 4 KiB blocks hold a maximal record"
    );
    m.reset_counters();
    for i in 0..6u8 {
        s.save(&cfg(i + 1, "x")).unwrap();
    }
    assert_eq!(m.violations(), 0);
    assert_eq!(m.erases(), 6, "one erase per save");
    // Slot B starts on an erase-block boundary, in its own blocks.
    assert_eq!(s.slot_size() % 4096, 0);
    let img = m.image();
    assert_eq!(&img[20480..20484], &MAGIC);
}

#[test]
fn verify_catches_a_device_that_does_not_store() {
    // A flash whose target slot was not erased by us and has 0 bits: writes cannot set them.
    struct NoErase(SimFlash);
    impl FlashDevice for NoErase {
        fn describe(&self) -> String {
            "broken-flash".into()
        }
        fn geometry(&self) -> backend::Geometry {
            self.0.geometry()
        }
        fn read(&mut self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
            self.0.read(o, b)
        }
        fn erase(&mut self, _o: u64, _l: u64) -> std::io::Result<()> {
            Ok(()) // silently does nothing, like a worn-out block
        }
        fn write(&mut self, o: u64, d: &[u8]) -> std::io::Result<()> {
            self.0.write(o, d)
        }
    }
    let m = SimMedium::new(4096 * 12, 4096, 0x00);
    let mut s = Store::with_backend(Box::new(MtdBackend::new(NoErase(SimFlash(m))).unwrap()));
    let e = s.save(&cfg(1, "a")).unwrap_err().to_string();
    assert!(e.contains("did not verify after writing"), "{e}");
}

// ---- real MTD device ---------------------------------------------------------

/// Opt-in: it erases the device, and no host kernel here has MTD (no mtdram/block2mtd),
/// so it is ignored by default rather than skipped; run it where a spare device exists:
/// `APPLIANCE_TEST_MTD=/dev/mtdN cargo test -p appliance real_mtd_device -- --ignored`.
#[test]
#[ignore = "erases an MTD device: set APPLIANCE_TEST_MTD=/dev/mtdN and pass --ignored"]
fn real_mtd_device() {
    let dev = std::env::var("APPLIANCE_TEST_MTD")
        .expect("set APPLIANCE_TEST_MTD=/dev/mtdN (a spare device: THIS ERASES IT)");
    assert!(
        std::path::Path::new(&dev).exists(),
        "APPLIANCE_TEST_MTD={dev}: no such device"
    );
    let mut s = Store::open(&format!("mtd:{dev}")).expect("open mtd");
    let (a, b) = (cfg(2, "mtd-a"), cfg(3, "mtd-b"));
    let g1 = s.save(&a).unwrap();
    let g2 = s.save(&b).unwrap();
    assert_eq!(g2, g1 + 1);
    let l = Store::open(&format!("mtd:{dev}")).unwrap().load().unwrap();
    assert_eq!(l.config, b);
    s.erase().unwrap();
    assert_eq!(s.load().unwrap().origin, Origin::Empty);
}

#[test]
fn mtd_abi_layout() {
    assert_eq!(std::mem::size_of::<backend::MtdInfoUser>(), 32);
    assert_eq!(std::mem::size_of::<backend::EraseInfoUser>(), 8);
    // MEMGETINFO = _IOR('M', 1, struct mtd_info_user), MEMERASE = _IOW('M', 2, struct erase_info_user).
    assert_eq!(nix::request_code_read!(b'M', 1, 32), 0x8020_4d01);
    assert_eq!(nix::request_code_write!(b'M', 2, 8), 0x4008_4d02);
}

// ---- benchmark ---------------------------------------------------------------

#[test]
#[ignore = "benchmark: run with `cargo test --release -p appliance store::tests::bench -- --ignored --nocapture`"]
fn bench_save_load() {
    use std::time::Instant;
    let big = largest_config();
    let demo = Config::builtin_default();
    let rec_big = encode_record(&big, 1).unwrap().len();
    let rec_demo = encode_record(&demo, 1).unwrap().len();
    println!("record size: largest config {rec_big} bytes, demo config {rec_demo} bytes");
    let d = tempfile::tempdir().unwrap();
    let runs = 50;
    for (label, spec_or_sim) in [
        ("file (tmpdir, fdatasync)", true),
        ("sim flash 64 KiB blocks", false),
    ] {
        let m = flash_sim(65536, 4);
        let mk = || -> Store {
            if spec_or_sim {
                Store::open(&format!("file:{}", d.path().join("bench.bin").display())).unwrap()
            } else {
                flash_store(&m)
            }
        };
        for (name, c) in [("largest", &big), ("demo", &demo)] {
            let mut s = mk();
            let t = Instant::now();
            for _ in 0..runs {
                s.save(c).unwrap();
            }
            let save = t.elapsed() / runs;
            let t = Instant::now();
            for _ in 0..runs {
                assert_eq!(&s.load().unwrap().config, c);
            }
            let load = t.elapsed() / runs;
            println!("{label:28} {name:8} save {save:>10.1?}  load {load:>10.1?}");
        }
    }
}

#[test]
fn equal_generations_resolve_the_same_way_in_load_and_save() {
    let (a_cfg, b_cfg) = (cfg(1, "in-slot-a"), cfg(2, "in-slot-b"));
    let a = record::encode_record(&a_cfg, 7).unwrap();
    let b = record::encode_record(&b_cfg, 7).unwrap();
    let states = || [record::decode_slot(&a), record::decode_slot(&b)];
    let loaded = pick(states(), &Config::builtin_default());
    assert_eq!((loaded.origin, loaded.generation), (Origin::SlotA, 7));
    assert_eq!(loaded.config.hostname.as_str(), "in-slot-a");
    // The next save must not overwrite the record that load uses.
    assert_eq!(record::next_target(&states()), (Slot::B, 8));

    // Through a store: a save interrupted before anything reached the medium leaves the
    // loaded config; a complete one becomes the newest.
    let m = file_sim();
    let mut store = file_store(&m);
    {
        let mut backend = FileBackend::with_disk(SimDisk(m.clone()));
        backend::Backend::write(&mut backend, Slot::A, &a).unwrap();
        backend::Backend::write(&mut backend, Slot::B, &b).unwrap();
    }
    assert_eq!(store.load().unwrap().config.hostname.as_str(), "in-slot-a");
    let g = store.save(&cfg(3, "newer")).unwrap();
    assert_eq!(g, 8);
    let l = store.load().unwrap();
    assert_eq!(
        (l.origin, l.config.hostname.as_str()),
        (Origin::SlotB, "newer")
    );
    // Slot A (the previously loaded record) is intact.
    let again = pick(
        [
            record::decode_slot(&m.image()[..a.len()]),
            record::SlotState::Erased,
        ],
        &Config::builtin_default(),
    );
    assert_eq!(again.config.hostname.as_str(), "in-slot-a");
}

/// A disk with a cache in front of a medium that silently drops writes (a lying device).
struct LyingDisk {
    cache: Vec<u8>,
    uncached_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl backend::Disk for LyingDisk {
    fn describe(&self) -> String {
        "lying".into()
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
        let o = o as usize;
        b.copy_from_slice(&self.cache[o..o + b.len()]);
        Ok(())
    }
    fn write_at(&mut self, o: u64, d: &[u8]) -> std::io::Result<()> {
        let o = o as usize;
        self.cache[o..o + d.len()].copy_from_slice(d);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn read_uncached(&mut self, _o: u64, b: &mut [u8]) -> std::io::Result<()> {
        self.uncached_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        b.fill(0xFF); // the medium never got the data
        Ok(())
    }
}

#[test]
fn save_verifies_the_medium_not_the_cache() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let disk = LyingDisk {
        cache: vec![0xFF; 2 * FILE_SLOT_SIZE],
        uncached_reads: n.clone(),
    };
    let mut store = Store::with_backend(Box::new(FileBackend::with_disk(disk)));
    match store.save(&cfg(1, "x")) {
        Err(StoreError::Verify { why, .. }) => assert!(why.contains("first difference"), "{why}"),
        other => panic!("a write lost below the cache must fail verification: {other:?}"),
    }
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn uncached_read_back_works_on_a_real_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("store.bin");
    let mut disk = backend::FileDisk::new(&path);
    let mut buf = [0u8; 16];
    backend::Disk::read_uncached(&mut disk, 0, &mut buf).unwrap();
    assert_eq!(buf, [0xFF; 16], "a missing file reads as erased");
    let mut store = Store::open(&format!("file:{}", path.display())).unwrap();
    assert_eq!(store.save(&cfg(2, "real")).unwrap(), 1);
    backend::Disk::read_uncached(&mut disk, 0, &mut buf).unwrap();
    assert_ne!(buf, [0xFF; 16]);
    assert_eq!(store.load().unwrap().config.hostname.as_str(), "real");
}

#[test]
fn a_missing_device_is_an_error_never_a_file_under_dev() {
    let path = format!("/dev/appliance-test-missing-{}", std::process::id());
    let e = Store::open(&format!("file:{path}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not exist") && e.contains("never created as a file"),
        "{e}"
    );
    assert!(!std::path::Path::new(&path).exists());
    // Also when the device vanishes after opening: writes fail instead of creating it.
    let mut disk = backend::FileDisk::new(&path);
    let e = backend::Disk::write_at(&mut disk, 0, b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(!std::path::Path::new(&path).exists(), "created {path}");
    // Outside /dev a missing file is still a new, empty store.
    let d = tempfile::tempdir().unwrap();
    let mut s = Store::open(&format!("file:{}", d.path().join("new/c.bin").display())).unwrap();
    assert_eq!(s.load().unwrap().origin, Origin::Empty);
}
