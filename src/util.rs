//! Small helpers that depend on nothing else in the crate: a leaf module,
//! so that any module may use them without an import cycle (the scenario
//! used to lend `hex` to the image and the VM, which the scenario imports).

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current UTC time, RFC 3339 with seconds.
pub fn now_utc() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The CPU's time-stamp counter (x86-64's RDTSC); `None` elsewhere.
pub fn tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC only reads the counter; every x86-64 CPU has it.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(now_utc().len(), "2026-11-28T10:00:00Z".len());
    }
}
