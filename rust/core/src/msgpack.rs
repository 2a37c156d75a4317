//! The check that a value of an `any` column is one msgpack object of the kinds FORMAT.md
//! allows. Both sides use it: the writer before it stores a value, the decoder before it
//! hands one out.

use crate::format::MAX_MSGPACK_DEPTH;

/// Checks that `v` is exactly one msgpack object of the kinds FORMAT.md allows for `any`
/// (nil, bool, int, float, str, bin, array, map; no ext), with nothing after it.
pub fn check_msgpack(v: &[u8]) -> Result<(), String> {
    let end = skip_msgpack(v, 0, 0)?;
    if end != v.len() {
        return Err(format!("{} bytes after the msgpack object", v.len() - end));
    }
    Ok(())
}

fn skip_msgpack(v: &[u8], pos: usize, depth: usize) -> Result<usize, String> {
    if depth > MAX_MSGPACK_DEPTH {
        return Err(format!(
            "msgpack nests more than {} levels deep",
            MAX_MSGPACK_DEPTH
        ));
    }
    let byte = |at: usize| {
        v.get(at)
            .copied()
            .ok_or_else(|| "truncated msgpack object".to_string())
    };
    let be = |at: usize, n: usize| -> Result<usize, String> {
        let s = v.get(at..at + n).ok_or("truncated msgpack object")?;
        Ok(s.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize))
    };
    let take = |at: usize, n: usize| -> Result<usize, String> {
        at.checked_add(n)
            .filter(|&e| e <= v.len())
            .ok_or_else(|| "truncated msgpack object".to_string())
    };
    let m = byte(pos)?;
    let p = pos + 1;
    let items = |mut at: usize, count: usize| -> Result<usize, String> {
        for _ in 0..count {
            at = skip_msgpack(v, at, depth + 1)?;
        }
        Ok(at)
    };
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Ok(p),
        0x80..=0x8f => items(p, 2 * (m & 0x0f) as usize),
        0x90..=0x9f => items(p, (m & 0x0f) as usize),
        0xa0..=0xbf => take(p, (m & 0x1f) as usize).and_then(|e| utf8(v, p, e)),
        0xc4 => take(p + 1, be(p, 1)?),
        0xc5 => take(p + 2, be(p, 2)?),
        0xc6 => take(p + 4, be(p, 4)?),
        0xca => take(p, 4),
        0xcb => take(p, 8),
        0xcc | 0xd0 => take(p, 1),
        0xcd | 0xd1 => take(p, 2),
        0xce | 0xd2 => take(p, 4),
        0xcf | 0xd3 => take(p, 8),
        0xd9 => take(p + 1, be(p, 1)?).and_then(|e| utf8(v, p + 1, e)),
        0xda => take(p + 2, be(p, 2)?).and_then(|e| utf8(v, p + 2, e)),
        0xdb => take(p + 4, be(p, 4)?).and_then(|e| utf8(v, p + 4, e)),
        0xdc => items(p + 2, be(p, 2)?),
        0xdd => items(p + 4, be(p, 4)?),
        0xde => items(p + 2, 2 * be(p, 2)?),
        0xdf => items(p + 4, 2 * be(p, 4)?),
        0xc1 => Err("invalid msgpack marker 0xc1".into()),
        _ => Err(format!(
            "msgpack extension type (marker {m:#04x}) is not allowed"
        )),
    }
}

fn utf8(v: &[u8], start: usize, end: usize) -> Result<usize, String> {
    std::str::from_utf8(&v[start..end])
        .map_err(|_| "invalid UTF-8 in a msgpack string".to_string())?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::check_msgpack;

    #[test]
    fn msgpack_validation() {
        // {"k": [1, "x", nil, 2.5]}
        let ok = [
            0x81, 0xa1, b'k', 0x94, 0x01, 0xa1, b'x', 0xc0, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0,
        ];
        assert!(check_msgpack(&ok).is_ok());
        for bad in [
            &[0xc1][..],
            &[0xc0, 0xc0],
            &[0xa1, 0xff],
            &[0x92, 0x01],
            &[0xd4, 0, 0],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(check_msgpack(bad).is_err(), "{bad:?}");
        }
    }
}
