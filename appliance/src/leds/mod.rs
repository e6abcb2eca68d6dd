//! Status LEDs: pure pattern logic plus LED-class and sysfs-GPIO backends.
//!
//! - [`pattern_for`] / [`role_pattern`] decide what each LED shows (pure).
//! - LED class devices (`<sysfs>/class/leds/NAME`) blink with the kernel `timer` trigger,
//!   so blinking continues and the state stays defined if the daemon stalls; steady
//!   states use trigger `none` + brightness. Without a timer trigger we blink in software.
//! - GPIO lines go through the [`GpioProvider`] trait: the real one uses the `sysfs_gpio`
//!   crate (which hard-codes `/sys/class/gpio`), [`TreeGpio`] speaks the same sysfs
//!   protocol under any root so tests can use a fake tree. GPIO has no timer trigger, so
//!   blinking is a small tokio task.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, warn};

pub use crate::config::{LedBackend, LedBinding, LedRole};

/// Pool health as the LEDs need it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSummary {
    /// Servers currently up.
    pub up: usize,
    /// Servers configured (enabled).
    pub total: usize,
    /// A fault outside the pool (kernel sync failure, crash loop...).
    pub fault: bool,
    /// Still starting (config not applied / first probes pending).
    pub booting: bool,
    /// HA role (for the `ha` LED).
    pub ha: HaLed,
}

/// The HA role as the `ha` LED shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HaLed {
    /// HA is not enabled: dark.
    #[default]
    Disabled,
    /// Backup (also while starting, which is backup until the election says otherwise).
    Backup,
    /// Master: holds the VIPs.
    Master,
    /// Fault (link down, pool dead): cannot take over.
    Fault,
    /// Master while another master is heard (split brain until the other yields).
    SplitBrain,
}

/// HA LED pattern: master on, backup slow blink, fault fast blink, split brain a
/// stutter (mostly on, short gaps), HA off dark.
pub fn ha_pattern(h: HaLed) -> Pattern {
    match h {
        HaLed::Disabled => Pattern::Off,
        HaLed::Backup => SLOW_BLINK,
        HaLed::Master => Pattern::On,
        HaLed::Fault => FAST_BLINK,
        HaLed::SplitBrain => SPLIT_BRAIN_BLINK,
    }
}

/// What an LED does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Dark.
    Off,
    /// Steady on.
    On,
    /// Periodic blink.
    Blink {
        /// Milliseconds on.
        on_ms: u32,
        /// Milliseconds off.
        off_ms: u32,
    },
}

/// Booting: 1 Hz blink.
pub const BOOT_BLINK: Pattern = Pattern::Blink {
    on_ms: 500,
    off_ms: 500,
};
/// Degraded pool: slow blink (0.5 Hz, mostly visible as "on with gaps").
pub const SLOW_BLINK: Pattern = Pattern::Blink {
    on_ms: 1000,
    off_ms: 1000,
};
/// No server up or a fault: fast blink (5 Hz).
pub const FAST_BLINK: Pattern = Pattern::Blink {
    on_ms: 100,
    off_ms: 100,
};
/// Split brain on the `ha` LED: mostly on with short gaps, unlike every other pattern.
pub const SPLIT_BRAIN_BLINK: Pattern = Pattern::Blink {
    on_ms: 300,
    off_ms: 100,
};
/// Traffic flicker on the activity LED.
pub const ACTIVITY_BLINK: Pattern = Pattern::Blink {
    on_ms: 50,
    off_ms: 50,
};

/// Pool LED pattern: booting blink; all up on; degraded slow blink; none up or fault fast blink.
pub fn pattern_for(s: PoolSummary) -> Pattern {
    if s.booting {
        BOOT_BLINK
    } else if s.fault || s.up == 0 {
        // No configured server counts as "none up": nothing can take calls.
        FAST_BLINK
    } else if s.up >= s.total {
        Pattern::On
    } else {
        SLOW_BLINK
    }
}

/// Pattern for each LED role.
///
/// Status: booting blink, crash loop or fault fast blink, else on. Pool: [`pattern_for`].
/// HA: [`ha_pattern`]. Activity: flicker while traffic flows.
pub fn role_pattern(role: LedRole, s: PoolSummary, crash_loop: bool, activity: bool) -> Pattern {
    match role {
        LedRole::Status if s.booting => BOOT_BLINK,
        LedRole::Status if crash_loop || s.fault => FAST_BLINK,
        LedRole::Status => Pattern::On,
        LedRole::Pool => pattern_for(PoolSummary {
            fault: s.fault || crash_loop,
            ..s
        }),
        LedRole::Ha => ha_pattern(s.ha),
        LedRole::Activity if activity => ACTIVITY_BLINK,
        LedRole::Activity => Pattern::Off,
    }
}

/// LED errors.
#[derive(Debug, thiserror::Error)]
pub enum LedError {
    /// LED class device missing.
    #[error("LED '{name}' not found at {path}; check the board's LED names (ls /sys/class/leds)")]
    NoSuchLed {
        /// Name.
        name: String,
        /// Where we looked.
        path: PathBuf,
    },
    /// A sysfs attribute could not be written or read.
    #[error("LED {what}: {path}: {source}")]
    Io {
        /// Which LED / operation.
        what: String,
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The GPIO line could not be set up.
    #[error("GPIO {gpio}: {reason}")]
    Gpio {
        /// GPIO number.
        gpio: u32,
        /// What went wrong.
        reason: String,
    },
    /// Software blinking needs a tokio runtime.
    #[error("LED '{0}': software blinking needs to run inside the daemon's tokio runtime")]
    NoRuntime(String),
}

fn write_attr(what: &str, path: &Path, value: &str) -> Result<(), LedError> {
    // No create: sysfs attributes exist or the device/trigger is missing.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| LedError::Io {
            what: what.to_owned(),
            path: path.to_path_buf(),
            source,
        })
}

fn read_attr(what: &str, path: &Path) -> Result<String, LedError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| LedError::Io {
            what: what.to_owned(),
            path: path.to_path_buf(),
            source,
        })
}

/// A binary output (GPIO line or LED brightness) for software-driven LEDs.
pub trait GpioLine: Send {
    /// Light (true) or darken (false) the LED, active-low already accounted for.
    fn set(&mut self, on: bool) -> Result<(), LedError>;
}

/// Opens GPIO lines as outputs.
pub trait GpioProvider {
    /// Export `gpio`, make it an output with the given polarity, start dark.
    fn open(&self, gpio: u32, active_low: bool) -> Result<Box<dyn GpioLine>, LedError>;
}

/// Real GPIOs through the `sysfs_gpio` crate (always `/sys/class/gpio`).
pub struct SysfsGpio;

struct SysfsGpioLine {
    pin: sysfs_gpio::Pin,
    gpio: u32,
}

impl GpioLine for SysfsGpioLine {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        self.pin
            .set_value(u8::from(on))
            .map_err(|e| LedError::Gpio {
                gpio: self.gpio,
                reason: format!("cannot set value: {e}"),
            })
    }
}

impl GpioProvider for SysfsGpio {
    fn open(&self, gpio: u32, active_low: bool) -> Result<Box<dyn GpioLine>, LedError> {
        let pin = sysfs_gpio::Pin::new(u64::from(gpio));
        let err = |step: &str, e: sysfs_gpio::Error| LedError::Gpio {
            gpio,
            reason: format!("{step}: {e} (is CONFIG_GPIO_SYSFS enabled and the number right?)"),
        };
        pin.export().map_err(|e| err("export", e))?;
        pin.set_active_low(active_low)
            .map_err(|e| err("set active_low", e))?;
        pin.set_direction(sysfs_gpio::Direction::Low)
            .map_err(|e| err("set direction out", e))?;
        Ok(Box::new(SysfsGpioLine { pin, gpio }))
    }
}

/// The sysfs GPIO protocol under an arbitrary root (`<root>/class/gpio`), for fake trees.
pub struct TreeGpio {
    root: PathBuf,
}

impl TreeGpio {
    /// GPIOs under `<sysfs_root>/class/gpio`.
    pub fn new(sysfs_root: &Path) -> TreeGpio {
        TreeGpio {
            root: sysfs_root.join("class/gpio"),
        }
    }
}

struct FileLine {
    what: String,
    path: PathBuf,
    on: String,
    off: String,
}

impl GpioLine for FileLine {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        write_attr(
            &self.what,
            &self.path,
            if on { &self.on } else { &self.off },
        )
    }
}

impl GpioProvider for TreeGpio {
    fn open(&self, gpio: u32, active_low: bool) -> Result<Box<dyn GpioLine>, LedError> {
        let dir = self.root.join(format!("gpio{gpio}"));
        let what = format!("gpio{gpio}");
        if !dir.is_dir() {
            write_attr(&what, &self.root.join("export"), &gpio.to_string())?;
            if !dir.is_dir() {
                return Err(LedError::Gpio {
                    gpio,
                    reason: format!("{} did not appear after export", dir.display()),
                });
            }
        }
        write_attr(
            &what,
            &dir.join("active_low"),
            if active_low { "1" } else { "0" },
        )?;
        // "low" = output, initially inactive (no glitch to on).
        write_attr(&what, &dir.join("direction"), "low")?;
        Ok(Box::new(FileLine {
            what,
            path: dir.join("value"),
            on: "1".into(),
            off: "0".into(),
        }))
    }
}

/// One physical LED.
trait LedDevice: Send {
    fn show(&mut self, p: Pattern) -> Result<(), LedError>;
}

/// LED driven by software: steady states set directly, blinking by a tokio task.
///
/// A generation counter under the same lock as the line makes a stale blink task (abort
/// is not synchronous on a multi-threaded runtime) unable to overwrite a newer pattern.
struct SoftLed {
    name: String,
    line: Arc<Mutex<(Box<dyn GpioLine>, u64)>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Set the line if `gen` is still current; returns false when superseded.
fn soft_set(
    line: &Mutex<(Box<dyn GpioLine>, u64)>,
    gen: Option<u64>,
    on: bool,
) -> Result<bool, LedError> {
    let mut g = match line.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if gen.is_some_and(|n| n != g.1) {
        return Ok(false);
    }
    g.0.set(on).map(|_| true)
}

impl SoftLed {
    fn new(name: String, line: Box<dyn GpioLine>) -> SoftLed {
        SoftLed {
            name,
            line: Arc::new(Mutex::new((line, 0))),
            task: None,
        }
    }
    /// Start a new generation (invalidates running blink tasks) and return it.
    fn next_gen(&self) -> u64 {
        let mut g = match self.line.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.1 = g.1.wrapping_add(1);
        g.1
    }
}

impl Drop for SoftLed {
    fn drop(&mut self) {
        self.next_gen();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl LedDevice for SoftLed {
    fn show(&mut self, p: Pattern) -> Result<(), LedError> {
        let gen = self.next_gen();
        if let Some(t) = self.task.take() {
            t.abort();
        }
        match p {
            Pattern::Off => soft_set(&self.line, Some(gen), false).map(|_| ()),
            Pattern::On => soft_set(&self.line, Some(gen), true).map(|_| ()),
            Pattern::Blink { on_ms, off_ms } => {
                let rt = tokio::runtime::Handle::try_current()
                    .map_err(|_| LedError::NoRuntime(self.name.clone()))?;
                soft_set(&self.line, Some(gen), true)?;
                let line = Arc::clone(&self.line);
                let name = self.name.clone();
                self.task = Some(rt.spawn(async move {
                    let mut on = true;
                    let mut warned = false;
                    loop {
                        let ms = if on { on_ms } else { off_ms };
                        tokio::time::sleep(Duration::from_millis(u64::from(ms.max(10)))).await;
                        on = !on;
                        match soft_set(&line, Some(gen), on) {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(e) => {
                                if !warned {
                                    warn!(led = %name, error = %e, "LED blink write failed");
                                    warned = true;
                                }
                            }
                        }
                    }
                }));
                Ok(())
            }
        }
    }
}

/// LED class device with the kernel timer trigger.
struct ClassLed {
    name: String,
    dir: PathBuf,
    max: u32,
}

impl LedDevice for ClassLed {
    fn show(&mut self, p: Pattern) -> Result<(), LedError> {
        let w = |attr: &str, v: &str| write_attr(&self.name, &self.dir.join(attr), v);
        match p {
            Pattern::Off | Pattern::On => {
                // Trigger first: setting "none" itself darkens the LED.
                w("trigger", "none")?;
                w(
                    "brightness",
                    &if p == Pattern::On { self.max } else { 0 }.to_string(),
                )
            }
            Pattern::Blink { on_ms, off_ms } => {
                // delay_on/delay_off appear once the timer trigger is active.
                w("trigger", "timer")?;
                w("delay_on", &on_ms.to_string())?;
                w("delay_off", &off_ms.to_string())
            }
        }
    }
}

/// Brightness file as a binary line (class LEDs without a timer trigger).
struct BrightnessLine {
    name: String,
    path: PathBuf,
    max: u32,
}

impl GpioLine for BrightnessLine {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        write_attr(
            &self.name,
            &self.path,
            &if on { self.max } else { 0 }.to_string(),
        )
    }
}

/// The set of board LEDs, addressed by role.
pub struct Leds {
    leds: Vec<(LedRole, Box<dyn LedDevice>, Option<Pattern>)>,
}

impl Leds {
    /// Open every binding under `sysfs_root` (normally `/sys`); the first failure is returned.
    ///
    /// GPIO bindings use the `sysfs_gpio` crate when the root is `/sys`, otherwise the same
    /// protocol on the given tree ([`TreeGpio`]).
    pub fn open(bindings: &[LedBinding], sysfs_root: &Path) -> Result<Leds, LedError> {
        if sysfs_root == Path::new("/sys") {
            Self::open_with(bindings, sysfs_root, &SysfsGpio)
        } else {
            Self::open_with(bindings, sysfs_root, &TreeGpio::new(sysfs_root))
        }
    }

    /// Like [`Leds::open`] with an explicit GPIO provider.
    pub fn open_with(
        bindings: &[LedBinding],
        sysfs_root: &Path,
        gpio: &dyn GpioProvider,
    ) -> Result<Leds, LedError> {
        let mut leds = Vec::new();
        for b in bindings {
            let dev: Box<dyn LedDevice> = match b.backend {
                LedBackend::Class => {
                    let name = b.name.to_string();
                    let dir = sysfs_root.join("class/leds").join(&name);
                    if !dir.is_dir() {
                        return Err(LedError::NoSuchLed { name, path: dir });
                    }
                    let max = read_attr(&name, &dir.join("max_brightness"))?
                        .parse::<u32>()
                        .unwrap_or(1)
                        .max(1);
                    let triggers = read_attr(&name, &dir.join("trigger"))?;
                    let has_timer = triggers
                        .split_whitespace()
                        .any(|t| t.trim_matches(|c| c == '[' || c == ']') == "timer");
                    if has_timer {
                        Box::new(ClassLed { name, dir, max })
                    } else {
                        debug!(led = %name, "no timer trigger, blinking in software");
                        write_attr(&name, &dir.join("trigger"), "none")?;
                        let line = BrightnessLine {
                            name: name.clone(),
                            path: dir.join("brightness"),
                            max,
                        };
                        Box::new(SoftLed::new(name, Box::new(line)))
                    }
                }
                LedBackend::Gpio => {
                    let line = gpio.open(b.gpio, b.active_low)?;
                    Box::new(SoftLed::new(format!("gpio{}", b.gpio), line))
                }
            };
            leds.push((b.role, dev, None));
        }
        Ok(Leds { leds })
    }

    /// Show `p` on every LED bound to `role` (no-op for unbound roles or unchanged patterns).
    pub fn show(&mut self, role: LedRole, p: Pattern) -> Result<(), LedError> {
        let mut first_err = None;
        for (r, dev, cur) in self.leds.iter_mut() {
            if *r != role || *cur == Some(p) {
                continue;
            }
            match dev.show(p) {
                Ok(()) => *cur = Some(p),
                Err(e) => {
                    *cur = None;
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Update every role from the pool summary ([`role_pattern`]).
    pub fn show_all(
        &mut self,
        s: PoolSummary,
        crash_loop: bool,
        activity: bool,
    ) -> Result<(), LedError> {
        let mut first_err = None;
        for role in [
            LedRole::Status,
            LedRole::Pool,
            LedRole::Ha,
            LedRole::Activity,
        ] {
            if let Err(e) = self.show(role, role_pattern(role, s, crash_loop, activity)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Number of LEDs opened.
    pub fn len(&self) -> usize {
        self.leds.len()
    }

    /// True when no LED is bound.
    pub fn is_empty(&self) -> bool {
        self.leds.is_empty()
    }
}

#[cfg(test)]
mod tests;
pub mod uleds;
