//! Minimal bencode (BitTorrent encoding) as used by rtpengine's ng control protocol.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    pub fn dict(items: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_slice() == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                let mut s = String::new();
                let _ = write!(s, "i{i}e");
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(items) => {
                // Bencode wants keys sorted as raw byte strings.
                let mut sorted: Vec<&(Vec<u8>, Value)> = items.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the start of `input`; returns it and the bytes consumed.
    pub fn decode(input: &[u8]) -> Option<(Value, usize)> {
        Self::decode_depth(input, 0)
    }

    fn decode_depth(input: &[u8], depth: usize) -> Option<(Value, usize)> {
        if depth > 32 {
            return None;
        }
        match *input.first()? {
            b'i' => {
                let end = input.iter().position(|&c| c == b'e')?;
                let n: i64 = std::str::from_utf8(&input[1..end]).ok()?.parse().ok()?;
                Some((Value::Int(n), end + 1))
            }
            b'l' => {
                let mut pos = 1;
                let mut items = Vec::new();
                loop {
                    if *input.get(pos)? == b'e' {
                        return Some((Value::List(items), pos + 1));
                    }
                    let (v, used) = Self::decode_depth(input.get(pos..)?, depth + 1)?;
                    items.push(v);
                    pos += used;
                }
            }
            b'd' => {
                let mut pos = 1;
                let mut items = Vec::new();
                loop {
                    if *input.get(pos)? == b'e' {
                        return Some((Value::Dict(items), pos + 1));
                    }
                    let (k, used) = Self::decode_depth(input.get(pos..)?, depth + 1)?;
                    pos += used;
                    let Value::Bytes(k) = k else { return None };
                    let (v, used) = Self::decode_depth(input.get(pos..)?, depth + 1)?;
                    pos += used;
                    items.push((k, v));
                }
            }
            b'0'..=b'9' => {
                let colon = input.iter().position(|&c| c == b':')?;
                let len: usize = std::str::from_utf8(&input[..colon]).ok()?.parse().ok()?;
                let start = colon + 1;
                let end = start.checked_add(len)?;
                let bytes = input.get(start..end)?.to_vec();
                Some((Value::Bytes(bytes), end))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let v = Value::dict(vec![
            ("sdp", Value::str("v=0\r\n")),
            ("command", Value::str("offer")),
            ("n", Value::Int(-42)),
            (
                "flags",
                Value::List(vec![Value::str("a"), Value::str("bc")]),
            ),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer5:flagsl1:a2:bce1:ni-42e3:sdp5:v=0\r\ne".to_vec()
        );
        let (back, used) = Value::decode(&out).unwrap_or((Value::Int(0), 0));
        assert_eq!(used, out.len());
        assert_eq!(back.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(back.get("n"), Some(&Value::Int(-42)));
        assert!(Value::decode(b"d3:abc").is_none());
        assert!(Value::decode(b"99999999999999999999:x").is_none());
    }
}
