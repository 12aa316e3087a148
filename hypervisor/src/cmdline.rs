//! Command-line parsing: the hypervisor's boot options and the words of a
//! boot module's command line.
//!
//! Syntax follows Xen: words separated by blanks, each `name` or
//! `name=value`; a value may be wrapped in double quotes to hold blanks
//! (`cmdline="console=hvc0 root=/dev/xvda"`). Booleans take Xen's spellings
//! (`name`, `no-name`, `name=yes|no|on|off|true|false|enable|disable|1|0`).
//! Sizes take Xen's suffixes (`K`, `M`, `G`, `T`; bytes by default).
//!
//! A typo in a GRUB entry must never stop a server from booting, so nothing
//! here fails: an unknown option is reported and ignored, a malformed value is
//! reported and the default kept. Reports go through a callback because this
//! runs before the heap exists.

use core::fmt;

/// One `name[=value]` word of a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    /// The whole word as written (quotes included), for messages.
    pub text: &'a str,
    pub name: &'a str,
    /// The value with surrounding quotes removed; `None` for a bare `name`.
    pub value: Option<&'a str>,
}

/// Splits a command line into words. Blanks inside double quotes do not
/// split; an unterminated quote runs to the end of the line.
#[derive(Debug, Clone)]
pub struct Words<'a> {
    rest: &'a str,
}

pub fn words(line: &str) -> Words<'_> {
    Words { rest: line }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let s = self.rest.trim_start_matches(is_blank);
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let mut in_quotes = false;
        let mut end = s.len();
        for (i, c) in s.char_indices() {
            if c == '"' {
                in_quotes = !in_quotes;
            } else if is_blank(c) && !in_quotes {
                end = i;
                break;
            }
        }
        let text = &s[..end];
        self.rest = &s[end..];
        // GRUB re-quotes an argument that holds blanks as a whole
        // ("name=a b"); users write name="a b". Both mean the same.
        let inner = match text.strip_prefix('"') {
            Some(t) => t.strip_suffix('"').unwrap_or(t),
            None => text,
        };
        let (name, value) = match inner.find('=') {
            Some(eq) => (&inner[..eq], Some(unquote(&inner[eq + 1..]))),
            None => (inner, None),
        };
        Some(Word { text, name, value })
    }
}

fn unquote(v: &str) -> &str {
    let v = v.strip_prefix('"').unwrap_or(v);
    v.strip_suffix('"').unwrap_or(v)
}

/// Parses Xen's boolean spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "yes" | "on" | "true" | "enable" => Some(true),
        "0" | "no" | "off" | "false" | "disable" => Some(false),
        _ => None,
    }
}

/// Parses an unsigned integer in decimal, or hexadecimal with `0x`.
pub fn parse_u64(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

/// Parses a size with an optional binary suffix (`B`, `K`, `M`, `G`, `T`),
/// the way Xen's `parse_size_and_unit` does. `default_shift` applies when no
/// suffix is given (0 for bytes, 20 for xl.cfg's MiB).
pub fn parse_size(v: &str, default_shift: u32) -> Option<u64> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'B' | b'b' => (&v[..v.len() - 1], 0),
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        b'T' | b't' => (&v[..v.len() - 1], 40),
        _ => (v, default_shift),
    };
    let n = parse_u64(digits)?;
    n.checked_mul(1u64 << shift)
}

/// Log verbosity, as Xen's `loglvl=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    None,
    Error,
    Warning,
    Info,
    Debug,
    All,
}

impl LogLevel {
    pub fn parse(v: &str) -> Option<LogLevel> {
        // Xen accepts "<level>[/<rate-limited level>]"; there is no rate
        // limiting here, so the part after the slash only has to be valid.
        let (lvl, rate) = match v.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (v, None),
        };
        let one = |s: &str| match s {
            "none" => Some(LogLevel::None),
            "error" => Some(LogLevel::Error),
            "warning" | "warn" => Some(LogLevel::Warning),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "all" => Some(LogLevel::All),
            _ => None,
        };
        if let Some(r) = rate {
            one(r)?;
        }
        one(lvl)
    }
}

/// What to do when the hypervisor panics (`panic=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAction {
    Halt,
    Reboot,
}

/// What to do when no domain is left to run (`on_last_exit=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    PowerOff,
    Halt,
    Reboot,
}

/// Test-only (`test_exception=`): raise an exception on purpose once the
/// boot has reached the point where it can report one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestException {
    /// #BP (int3): reported, then the boot goes on.
    Breakpoint,
    /// #UD (ud2): fatal.
    InvalidOpcode,
    /// #PF on a non-canonical-free unmapped address: fatal.
    PageFault,
    /// #GP (non-canonical access): fatal.
    GeneralProtection,
    /// #DE (divide by zero): fatal.
    DivideError,
    /// Unbounded recursion into the stack guard page: #PF cannot be
    /// delivered on the overflowed stack, so #DF arrives on its IST stack.
    StackOverflow,
    /// A write into the hypervisor's own code: #PF (text is read-only).
    WriteText,
    /// A jump into data: #PF on instruction fetch (data is no-execute).
    ExecData,
    /// A Rust panic.
    Panic,
}

impl TestException {
    fn parse(v: &str) -> Option<TestException> {
        Some(match v {
            "bp" | "int3" => TestException::Breakpoint,
            "ud" => TestException::InvalidOpcode,
            "pf" => TestException::PageFault,
            "gp" => TestException::GeneralProtection,
            "de" => TestException::DivideError,
            "stack-overflow" | "df" => TestException::StackOverflow,
            "write-text" => TestException::WriteText,
            "exec-data" => TestException::ExecData,
            "panic" => TestException::Panic,
            _ => return None,
        })
    }
}

/// Which hardware virtualization to use (`hvm=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HvmChoice {
    /// By CPU vendor and what works.
    Auto,
    Svm,
    Vmx,
}

/// Serial line settings from `com1=<baud>[/<clock>][,DPS[,<io-base>[,<irq>]]]`
/// (Xen's syntax, without the PCI forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialConfig {
    /// `None` = "auto": keep the divisor firmware programmed.
    pub baud: Option<u32>,
    /// UART input clock in Hz.
    pub clock_hz: u32,
    pub data_bits: u8,
    /// 'n', 'o', 'e', 'm' or 's'.
    pub parity: u8,
    pub stop_bits: u8,
    pub io_base: u16,
    pub irq: Option<u8>,
}

impl SerialConfig {
    pub const DEFAULT_COM1: SerialConfig = SerialConfig {
        baud: Some(115_200),
        clock_hz: 1_843_200,
        data_bits: 8,
        parity: b'n',
        stop_bits: 1,
        io_base: 0x3f8,
        irq: Some(4),
    };
}

/// Where console output goes (`console=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSet {
    pub com1: bool,
}

/// Up to 16 I/O port ranges (`dom0_ioports_disable=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortList {
    ranges: [(u16, u16); 16],
    len: usize,
}

impl PortList {
    pub fn as_slice(&self) -> &[(u16, u16)] {
        &self.ranges[..self.len]
    }
}

/// Every hypervisor boot option, with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub console: ConsoleSet,
    pub com1: SerialConfig,
    pub loglvl: LogLevel,
    pub panic: PanicAction,
    pub on_last_exit: ExitAction,
    /// `mem=`: ignore RAM at or above this physical address.
    pub mem_limit: Option<u64>,
    /// `dom0_mem=`: dom0's memory in bytes.
    pub dom0_mem: u64,
    /// `dom0_ioports_disable=`: ports dom0 does not get.
    pub dom0_ioports_disable: PortList,
    pub hvm: HvmChoice,
    /// `maxcpus=`: use at most this many CPUs (the boot CPU included).
    pub max_cpus: u32,
    /// `sched_report=`: print each domain's CPU time every this many ms.
    pub sched_report_ms: u64,
    /// `serial_input=`: the domain that gets serial input once the boot
    /// is done (None: the hypervisor keeps it, until Ctrl-A x3).
    pub serial_input: Option<u16>,
    pub test_exception: Option<TestException>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            console: ConsoleSet { com1: true },
            com1: SerialConfig::DEFAULT_COM1,
            loglvl: LogLevel::Info,
            panic: PanicAction::Halt,
            on_last_exit: ExitAction::PowerOff,
            mem_limit: None,
            dom0_mem: 128 << 20,
            dom0_ioports_disable: PortList::default(),
            hvm: HvmChoice::Auto,
            max_cpus: u32::MAX,
            sched_report_ms: 0,
            serial_input: None,
            test_exception: None,
        }
    }
}

/// A problem found on a command line. `Display` gives the one line that the
/// console prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnostic<'a> {
    /// Not an option we know: ignored.
    Unknown { word: &'a str },
    /// A known option with a value we cannot use: the default stays.
    Malformed { word: &'a str, expected: &'static str, using: &'static str },
    /// A known option we accept but cannot honour on this build.
    Unsupported { word: &'a str, why: &'static str },
}

impl fmt::Display for Diagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::Unknown { word } => write!(f, "unknown boot option '{word}' ignored"),
            Diagnostic::Malformed { word, expected, using } => {
                write!(f, "boot option '{word}' is malformed (expected {expected}); using {using}")
            }
            Diagnostic::Unsupported { word, why } => {
                write!(f, "boot option '{word}' not supported: {why}; ignored")
            }
        }
    }
}

/// The part of the GRUB command line that belongs to the hypervisor. GRUB
/// passes the image path as the first word of the multiboot2 command line
/// (as Xen's `cmdline_cook` knows); it is dropped here.
pub fn strip_image_path(line: &str) -> &str {
    let trimmed = line.trim_start_matches(is_blank);
    match trimmed.split(is_blank).next() {
        Some(first) if first.starts_with('/') || first.starts_with('(') => &trimmed[first.len()..],
        _ => trimmed,
    }
}

/// Parses the hypervisor's command line. Every problem is reported through
/// `report` and the parse goes on.
/// The hypervisor's command line as GRUB gave it (image path stripped),
/// kept for XENVER_commandline.
static SAVED_LINE: spin::Once<alloc::string::String> = spin::Once::new();

/// Keeps the command line for later readers (once, at boot).
pub fn save_line(line: &str) {
    SAVED_LINE.call_once(|| alloc::string::String::from(line));
}

/// The saved command line ("" before boot saved it).
pub fn saved_line() -> &'static str {
    SAVED_LINE.get().map_or("", |s| s.as_str())
}

pub fn parse_options<'a>(line: &'a str, mut report: impl FnMut(Diagnostic<'a>)) -> Options {
    let mut o = Options::default();
    for w in words(line) {
        // Xen's convention: "no-foo" negates boolean "foo".
        let (name, negated) = match w.name.strip_prefix("no-") {
            Some(n) => (n, true),
            None => (w.name, false),
        };
        let bad = |expected, using| Diagnostic::Malformed { word: w.text, expected, using };
        match name {
            "console" if !negated => match w.value {
                Some(v) => {
                    let mut com1 = false;
                    let mut none = false;
                    let mut ok = true;
                    for part in v.split(',') {
                        match part {
                            "com1" => com1 = true,
                            "none" => none = true,
                            "vga" | "ega" | "dbgp" | "ehci" | "xhci" | "com2" => report(Diagnostic::Unsupported {
                                word: w.text,
                                why: "only com1 (or none) is available",
                            }),
                            _ => ok = false,
                        }
                    }
                    if ok {
                        // Only com1 or an explicit none decides: a console
                        // we lack must not leave the server silent.
                        o.console.com1 = com1 || !none;
                    } else {
                        report(bad("a list of com1 / none", "console=com1"));
                    }
                }
                None => report(bad("console=<com1|none>", "console=com1")),
            },
            "com1" if !negated => match w.value.and_then(parse_serial) {
                Some(cfg) => o.com1 = cfg,
                None => report(bad(
                    "com1=<baud|auto>[/<clock-hz>][,<bits><parity><stop>[,<io-base>[,<irq>]]]",
                    "com1=115200,8n1,0x3f8,4",
                )),
            },
            "loglvl" if !negated => match w.value.and_then(LogLevel::parse) {
                Some(l) => o.loglvl = l,
                None => report(bad("none, error, warning, info, debug or all", "loglvl=info")),
            },
            "panic" if !negated => match w.value {
                Some("halt") => o.panic = PanicAction::Halt,
                Some("reboot") => o.panic = PanicAction::Reboot,
                _ => report(bad("panic=halt or panic=reboot", "panic=halt")),
            },
            // Xen's own spelling for "do not reboot on panic".
            "noreboot" if !negated && w.value.is_none() => o.panic = PanicAction::Halt,
            "on_last_exit" if !negated => match w.value {
                Some("poweroff") => o.on_last_exit = ExitAction::PowerOff,
                Some("halt") => o.on_last_exit = ExitAction::Halt,
                Some("reboot") => o.on_last_exit = ExitAction::Reboot,
                _ => report(bad("poweroff, halt or reboot", "on_last_exit=poweroff")),
            },
            "mem" if !negated => match w.value.and_then(|v| parse_size(v, 0)) {
                Some(limit) if limit >= (1 << 20) => o.mem_limit = Some(limit),
                _ => report(bad("a size of at least 1M, such as mem=4G", "all memory")),
            },
            // Xen's syntax also allows "min:..,max:.."; only the plain size is
            // meaningful without ballooning.
            "dom0_mem" if !negated => match w.value.and_then(|v| parse_size(v, 20)) {
                Some(m) if m >= (4 << 20) => o.dom0_mem = m,
                _ => report(bad("a size of at least 4M, such as dom0_mem=512M", "dom0_mem=128M")),
            },
            "dom0_ioports_disable" if !negated => {
                // Parsed into the option itself: no heap yet at this point.
                let mut l = PortList::default();
                match w.value.map(|v| crate::passthrough::ioports::parse_disabled(v, &mut l.ranges)) {
                    Some(Ok(n)) => {
                        l.len = n;
                        o.dom0_ioports_disable = l;
                    }
                    _ => report(bad("up to 16 hex ports or ranges, such as dom0_ioports_disable=2f8-2ff", "none")),
                }
            }
            "maxcpus" if !negated => match w.value.and_then(parse_u64) {
                Some(n) if n >= 1 => o.max_cpus = n.min(u32::MAX as u64) as u32,
                _ => report(bad("a number of CPUs of at least 1, such as maxcpus=4", "every CPU")),
            },
            "nosmp" if w.value.is_none() => o.max_cpus = 1,
            "sched" if !negated => match w.value {
                Some("credit") => {}
                _ => report(bad("sched=credit (the only scheduler)", "sched=credit")),
            },
            "sched_report" if !negated => match w.value.and_then(parse_u64) {
                Some(ms) if ms >= 10 => o.sched_report_ms = ms,
                Some(0) => o.sched_report_ms = 0,
                _ => report(bad("an interval of at least 10 ms, such as sched_report=1000", "no reports")),
            },
            "serial_input" if !negated => match w.value {
                Some("xen") => o.serial_input = None,
                Some(v) => match parse_u64(v) {
                    Some(id) if id < 0x7ff0 => o.serial_input = Some(id as u16),
                    _ => report(bad("serial_input=xen or a domain id, such as serial_input=1", "serial_input=xen")),
                },
                None => report(bad("serial_input=xen or a domain id, such as serial_input=1", "serial_input=xen")),
            },
            "hvm" if !negated => match w.value {
                Some("svm") => o.hvm = HvmChoice::Svm,
                Some("vmx") => o.hvm = HvmChoice::Vmx,
                Some("auto") => o.hvm = HvmChoice::Auto,
                _ => report(bad("hvm=svm, hvm=vmx or hvm=auto", "hvm=auto")),
            },
            "test_exception" if !negated => match w.value.and_then(TestException::parse) {
                Some(t) => o.test_exception = Some(t),
                None => report(bad(
                    "bp, ud, pf, gp, de, stack-overflow, write-text, exec-data or panic",
                    "no test exception",
                )),
            },
            _ => report(Diagnostic::Unknown { word: w.text }),
        }
    }
    o
}

fn parse_serial(v: &str) -> Option<SerialConfig> {
    let mut cfg = SerialConfig::DEFAULT_COM1;
    let mut parts = v.split(',');
    let speed = parts.next()?;
    let (baud, clock) = match speed.split_once('/') {
        Some((b, c)) => (b, Some(c)),
        None => (speed, None),
    };
    cfg.baud = match baud {
        "auto" => None,
        b => {
            let n = parse_u64(b)?;
            if n == 0 || n > 4_000_000 {
                return None;
            }
            Some(n as u32)
        }
    };
    if let Some(c) = clock {
        let hz = parse_u64(c)?;
        if hz == 0 || hz > u32::MAX as u64 {
            return None;
        }
        cfg.clock_hz = hz as u32;
    }
    if let Some(b) = cfg.baud
        && (cfg.clock_hz / 16) / b == 0
    {
        return None; // the divisor would be zero
    }
    if let Some(dps) = parts.next().filter(|s| !s.is_empty()) {
        let d = dps.as_bytes();
        if d.len() != 3 {
            return None;
        }
        cfg.data_bits = match d[0] {
            b'5'..=b'8' => d[0] - b'0',
            _ => return None,
        };
        cfg.parity = match d[1].to_ascii_lowercase() {
            p @ (b'n' | b'o' | b'e' | b'm' | b's') => p,
            _ => return None,
        };
        cfg.stop_bits = match d[2] {
            b'1' => 1,
            b'2' => 2,
            _ => return None,
        };
    }
    if let Some(io) = parts.next().filter(|s| !s.is_empty()) {
        let port = parse_u64(io)?;
        if port == 0 || port > 0xfff8 {
            return None;
        }
        cfg.io_base = port as u16;
    }
    if let Some(irq) = parts.next().filter(|s| !s.is_empty()) {
        let n = parse_u64(irq)?;
        if n > 15 {
            return None;
        }
        cfg.irq = if n == 0 { None } else { Some(n as u8) };
    }
    if parts.next().is_some() {
        return None;
    }
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn parse(line: &str) -> (Options, Vec<String>) {
        let mut diags = Vec::new();
        let o = parse_options(line, |d| diags.push(d.to_string()));
        (o, diags)
    }

    #[test]
    fn words_split_on_blanks_and_keep_quoted_values_whole() {
        let w: Vec<_> = words("  a=1\tb  c=\"x y  z\" d=\"\" e").collect();
        assert_eq!(w.len(), 5);
        assert_eq!((w[0].name, w[0].value), ("a", Some("1")));
        assert_eq!((w[1].name, w[1].value), ("b", None));
        assert_eq!((w[2].name, w[2].value), ("c", Some("x y  z")));
        assert_eq!(w[2].text, "c=\"x y  z\"");
        assert_eq!((w[3].name, w[3].value), ("d", Some("")));
        assert_eq!((w[4].name, w[4].value), ("e", None));
    }

    #[test]
    fn grub_style_whole_word_quotes() {
        let w: Vec<_> = words("domu \"cmdline=console=hvc0 root=/dev/xvda\" name=a").collect();
        assert_eq!(w.len(), 3);
        assert_eq!((w[1].name, w[1].value), ("cmdline", Some("console=hvc0 root=/dev/xvda")));
        assert_eq!(w[1].text, "\"cmdline=console=hvc0 root=/dev/xvda\"");
        assert_eq!((w[2].name, w[2].value), ("name", Some("a")));
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        let w: Vec<_> = words("a=\"b c").collect();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].value, Some("b c"));
    }

    #[test]
    fn empty_and_blank_lines_have_no_words() {
        assert_eq!(words("").count(), 0);
        assert_eq!(words(" \t \r\n").count(), 0);
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let (o, d) = parse("");
        assert_eq!(o, Options::default());
        assert!(d.is_empty());
    }

    #[test]
    fn known_options_are_applied() {
        let (o, d) = parse(
            "console=com1 com1=9600,8n1,0x2f8,3 loglvl=debug panic=reboot on_last_exit=halt mem=512M test_exception=pf",
        );
        assert!(d.is_empty(), "{d:?}");
        assert!(o.console.com1);
        assert_eq!(o.com1.baud, Some(9600));
        assert_eq!(o.com1.io_base, 0x2f8);
        assert_eq!(o.com1.irq, Some(3));
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(o.panic, PanicAction::Reboot);
        assert_eq!(o.on_last_exit, ExitAction::Halt);
        assert_eq!(o.mem_limit, Some(512 << 20));
        assert_eq!(o.test_exception, Some(TestException::PageFault));
    }

    #[test]
    fn unknown_option_is_named_and_ignored() {
        let (o, d) = parse("loglvl=debug consle=com1 frobnicate");
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(
            d,
            vec![
                "unknown boot option 'consle=com1' ignored".to_string(),
                "unknown boot option 'frobnicate' ignored".to_string(),
            ]
        );
    }

    #[test]
    fn malformed_value_keeps_the_default_and_says_so() {
        let (o, d) = parse("com1=fast loglvl=chatty panic=explode mem=12Q");
        assert_eq!(o.com1, SerialConfig::DEFAULT_COM1);
        assert_eq!(o.loglvl, LogLevel::Info);
        assert_eq!(o.panic, PanicAction::Halt);
        assert_eq!(o.mem_limit, None);
        assert_eq!(d.len(), 4);
        assert!(d[0].starts_with("boot option 'com1=fast' is malformed"), "{}", d[0]);
        assert!(d[0].ends_with("using com1=115200,8n1,0x3f8,4"), "{}", d[0]);
        assert!(d[1].contains("'loglvl=chatty'"));
        assert!(d[2].contains("'panic=explode'"));
        assert!(d[3].contains("'mem=12Q'"));
    }

    #[test]
    fn a_bad_option_does_not_disturb_the_ones_around_it() {
        let (o, d) = parse("panic=reboot com1=,,, loglvl=error");
        assert_eq!(o.panic, PanicAction::Reboot);
        assert_eq!(o.loglvl, LogLevel::Error);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn missing_value_of_a_valued_option_is_malformed() {
        let (_, d) = parse("loglvl panic");
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|m| m.contains("malformed")));
    }

    #[test]
    fn serial_forms() {
        let s = parse_serial("auto").unwrap();
        assert_eq!(s.baud, None);
        let s = parse_serial("57600/3686400,7e2").unwrap();
        assert_eq!((s.baud, s.clock_hz, s.data_bits, s.parity, s.stop_bits), (Some(57600), 3686400, 7, b'e', 2));
        let s = parse_serial("115200,,0x3e8,0").unwrap();
        assert_eq!((s.io_base, s.irq), (0x3e8, None));
        for bad in [
            "",
            "0",
            "9x",
            "115200,8n",
            "115200,9n1",
            "115200,8q1",
            "115200,8n3",
            "115200,8n1,0",
            "115200,8n1,0x3f8,16",
            "115200,8n1,0x3f8,4,1",
            "5000000",
            "115200/0",
            "115200/1000",
        ] {
            assert!(parse_serial(bad).is_none(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn loglvl_accepts_xen_rate_limited_form() {
        assert_eq!(LogLevel::parse("all/warning"), Some(LogLevel::All));
        assert_eq!(LogLevel::parse("all/loud"), None);
        assert_eq!(LogLevel::parse("warn"), Some(LogLevel::Warning));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096", 0), Some(4096));
        assert_eq!(parse_size("4K", 0), Some(4096));
        assert_eq!(parse_size("512m", 0), Some(512 << 20));
        assert_eq!(parse_size("2G", 0), Some(2 << 30));
        assert_eq!(parse_size("1T", 0), Some(1 << 40));
        assert_eq!(parse_size("0x1000", 0), Some(0x1000));
        assert_eq!(parse_size("256", 20), Some(256 << 20));
        assert_eq!(parse_size("", 0), None);
        assert_eq!(parse_size("M", 0), None);
        assert_eq!(parse_size("-1", 0), None);
        assert_eq!(parse_size("99999999999T", 0), None, "overflow is refused");
    }

    #[test]
    fn mem_below_one_mib_is_refused() {
        let (o, d) = parse("mem=4K");
        assert_eq!(o.mem_limit, None);
        assert_eq!(d.len(), 1);
        let (o, d) = parse("dom0_mem=512M");
        assert_eq!((o.dom0_mem, d.len()), (512 << 20, 0));
        let (o, d) = parse("dom0_ioports_disable=2f8-2ff,80");
        assert_eq!((o.dom0_ioports_disable.as_slice(), d.len()), (&[(0x2f8, 0x2ff), (0x80, 0x80)][..], 0));
        let (o, d) = parse("dom0_ioports_disable=2f8-");
        assert_eq!((o.dom0_ioports_disable.as_slice().len(), d.len()), (0, 1), "malformed: reported, none");
        let (o, _) = parse("dom0_mem=256");
        assert_eq!(o.dom0_mem, 256 << 20, "a bare number is MiB");
        let (o, d) = parse("maxcpus=2 sched=credit sched_report=500");
        assert_eq!((o.max_cpus, o.sched_report_ms, d.len()), (2, 500, 0));
        let (o, d) = parse("maxcpus=0 sched=credit2 sched_report=5");
        assert_eq!((o.max_cpus, o.sched_report_ms, d.len()), (u32::MAX, 0, 3));
        let (o, d) = parse("nosmp");
        assert_eq!((o.max_cpus, d.len()), (1, 0));
        let (o, d) = parse("hvm=vmx");
        assert_eq!((o.hvm, d.len()), (HvmChoice::Vmx, 0));
        let (o, d) = parse("hvm=intel");
        assert_eq!((o.hvm, d.len()), (HvmChoice::Auto, 1));
        let (o, d) = parse("dom0_mem=1M");
        assert_eq!((o.dom0_mem, d.len()), (128 << 20, 1));
    }

    #[test]
    fn serial_input_names_a_domain_or_the_hypervisor() {
        let (o, d) = parse("serial_input=1");
        assert_eq!((o.serial_input, d.len()), (Some(1), 0));
        let (o, d) = parse("serial_input=1 serial_input=xen");
        assert_eq!((o.serial_input, d.len()), (None, 0));
        for bad in ["serial_input=linux", "serial_input=", "serial_input", "serial_input=0x7ff0", "serial_input=-1"] {
            let (o, d) = parse(bad);
            assert_eq!((o.serial_input, d.len()), (None, 1), "{bad}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["1", "yes", "on", "true", "enable"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "no", "off", "false", "disable"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn console_lists() {
        let (o, d) = parse("console=none");
        assert!(!o.console.com1);
        assert!(d.is_empty());
        let (o, d) = parse("console=com1,vga");
        assert!(o.console.com1);
        assert_eq!(d.len(), 1, "vga is reported as unsupported");
        let (o, d) = parse("console=serial");
        assert!(o.console.com1, "default kept");
        assert_eq!(d.len(), 1);
    }

    /// A console we do not have, alone, must not leave a server silent:
    /// it is reported and ignored, and the serial console stays on.
    #[test]
    fn an_unsupported_console_alone_keeps_com1() {
        for v in ["vga", "com2", "vga,dbgp"] {
            let (o, d) = parse(&format!("console={v}"));
            assert!(o.console.com1, "console={v} turned COM1 off");
            assert!(!d.is_empty(), "console={v} was not reported");
        }
        let (o, _) = parse("console=vga,none");
        assert!(!o.console.com1, "none beside it still means no console");
    }

    #[test]
    fn image_path_is_stripped_only_when_present() {
        assert_eq!(strip_image_path("/boot/hypervisor.elf loglvl=all"), " loglvl=all");
        assert_eq!(strip_image_path("(hd0,1)/hv loglvl=all"), " loglvl=all");
        assert_eq!(strip_image_path("loglvl=all"), "loglvl=all");
        assert_eq!(strip_image_path(""), "");
        assert_eq!(strip_image_path("/boot/hv"), "");
    }
}
