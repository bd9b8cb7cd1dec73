//! The one scan both directions of the codec spend their time in: how far a run of
//! string bytes goes before a byte JSON treats specially (`"`, `\` or a control
//! character below 0x20).
//!
//! Records are mostly long runs of plain text, so the scan looks at 16 bytes per step
//! with word-wide bit tricks (portable, no `unsafe`), and only goes byte by byte inside
//! the 8 bytes that hold a special one.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The length of the leading run of `bytes` with no `"`, `\` or byte below 0x20.
#[inline]
pub fn plain_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i + 16 <= bytes.len() {
        let (a, b) = (word(bytes, i), word(bytes, i + 8));
        if special(a) | special(b) != 0 {
            break;
        }
        i += 16;
    }
    while i + 8 <= bytes.len() {
        if special(word(bytes, i)) != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !is_special(bytes[i]) {
        i += 1;
    }
    i
}

#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Non-zero exactly when some byte of `w` is special. Each test is the classic
/// "has a zero byte" / "has a byte less than n" trick: exact as a yes/no answer (which
/// byte it flags may be off after a borrow, hence the byte-wise search that follows).
#[inline]
fn special(w: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64)) | below_space
}

#[inline]
pub fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .position(|&b| is_special(b))
            .unwrap_or(bytes.len())
    }

    #[test]
    fn finds_every_special_byte_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                for special in (0u8..0x20).chain([b'"', b'\\']) {
                    // Neighbours that stress the borrow: 0x00, 0x20, 0x7f, 0x80, 0xff.
                    for filler in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b']', b'#'] {
                        let mut bytes = vec![filler; len];
                        bytes[at] = special;
                        assert_eq!(plain_prefix(&bytes), at, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_a_byte_wise_scan_on_random_bytes() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.u8(0..10) {
                    0 => rng.u8(..),
                    _ => rng.u8(0x20..0x7f),
                })
                .collect();
            assert_eq!(plain_prefix(&bytes), reference(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn plain_text_runs_to_the_end() {
        let text = "naïve café 東京 🙂 ".repeat(50);
        assert_eq!(plain_prefix(text.as_bytes()), text.len());
    }
}
