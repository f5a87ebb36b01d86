//! A fast reader of format-2 record content: a serde `Deserializer` over a byte slice for the
//! msgpack that `rmp_serde` writes (structs as arrays, enums as `{variant: value}` or a bare
//! variant name), used by [`super::record::open`] before `rmp_serde` itself.
//!
//! Why: decoding is most of a replay's work, and most of that was `rmp_serde`'s own machinery
//! (a marker read through `std::io::Read` per value, a `Result` per byte read). The derived
//! `Deserialize` impls, and so the types and the format, stay exactly as they are: this only
//! walks the same bytes with less ceremony.
//!
//! Invariant: this reader never decides anything on its own. It gives up ([`None`]) on
//! everything it does not take exactly as `rmp_serde` 1.3 does (extension types, 128-bit
//! integers, bytes where a sequence is asked for, invalid UTF-8, a length that does not match),
//! and the caller then decodes with `rmp_serde`, so a record it cannot read fails with the same
//! error as before. Where it does succeed, the value is the one `rmp_serde` gives (differential
//! tests in `record.rs` run both over valid and damaged records).

use serde::de::{self, DeserializeSeed, Visitor};
use serde::forward_to_deserialize_any;

/// `bytes` decoded as a `T`, or `None` when only `rmp_serde` can say what is wrong with them.
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Option<T> {
    T::deserialize(&mut Reader { rest: bytes, depth: 0 }).ok()
}

/// Why this reader gave up: never shown, the caller asks `rmp_serde` instead.
#[derive(Debug)]
struct GiveUp;

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not read by the fast reader")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

/// Nesting past this gives up (a damaged record must not exhaust the stack; `rmp_serde` has
/// its own limit).
const MAX_DEPTH: u16 = 256;

struct Reader<'de> {
    rest: &'de [u8],
    depth: u16,
}

impl<'de> Reader<'de> {
    #[inline]
    fn byte(&mut self) -> Result<u8, GiveUp> {
        let (&b, rest) = self.rest.split_first().ok_or(GiveUp)?;
        self.rest = rest;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], GiveUp> {
        if n > self.rest.len() {
            return Err(GiveUp);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GiveUp> {
        self.take(N)?.try_into().map_err(|_| GiveUp)
    }

    #[inline]
    fn len(&mut self, width: u8) -> Result<usize, GiveUp> {
        Ok(match width {
            1 => usize::from(self.byte()?),
            2 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    /// The length of a map header at the front and the header's size, without taking it
    /// (an enum is a map of one pair, or its bare variant; an array is the latter for rmp_serde).
    fn peek_map_len(&self) -> Option<(usize, usize)> {
        let r = self.rest;
        let be16 = |at: usize| r.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let be32 = |at: usize| r.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        match *r.first()? {
            m @ (0x80..=0x8f) => Some((usize::from(m & 0x0f), 1)),
            0xde => be16(1).map(|n| (n, 3)),
            0xdf => be32(1).map(|n| (n, 5)),
            _ => None,
        }
    }

    fn str<V: Visitor<'de>>(&mut self, len: usize, v: V) -> Result<V::Value, GiveUp> {
        let bytes = self.take(len)?;
        // Nearly every string a record holds is ASCII (names, ids, paths, JSON), which this
        // checks a word at a time; `from_utf8` pays a per-call setup that, for the many short
        // strings of a record (variant names above all), cost more than the check itself.
        let s = if bytes.is_ascii() {
            // SAFETY: every ASCII byte sequence is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes).map_err(|_| GiveUp)?
        };
        v.visit_borrowed_str(s)
    }

    fn seq<V: Visitor<'de>>(&mut self, len: usize, v: V) -> Result<V::Value, GiveUp> {
        self.nested(|r| {
            let mut access = Access { r, left: len };
            let value = v.visit_seq(&mut access)?;
            if access.left != 0 {
                return Err(GiveUp);
            }
            Ok(value)
        })
    }

    fn map<V: Visitor<'de>>(&mut self, len: usize, v: V) -> Result<V::Value, GiveUp> {
        self.nested(|r| {
            let mut access = Access { r, left: len };
            let value = v.visit_map(&mut access)?;
            if access.left != 0 {
                return Err(GiveUp);
            }
            Ok(value)
        })
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, GiveUp>) -> Result<T, GiveUp> {
        if self.depth >= MAX_DEPTH {
            return Err(GiveUp);
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    /// A number, a bool or nil: what `rmp_serde` reads where a number or a bool is asked for
    /// (a visitor that would take a string there must not see one).
    fn num<V: Visitor<'de>>(&mut self, v: V) -> Result<V::Value, GiveUp> {
        match self.rest.first() {
            Some(0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 | 0xca..=0xd3) => self.any(v, true),
            _ => Err(GiveUp),
        }
    }

    /// One value, whatever its type; `bytes`: a bin may be visited as bytes (`rmp_serde`
    /// visits it as a sequence of integers where a struct or sequence is asked for: given up).
    fn any<V: Visitor<'de>>(&mut self, v: V, bytes: bool) -> Result<V::Value, GiveUp> {
        let m = self.byte()?;
        match m {
            0x00..=0x7f => v.visit_u8(m),
            0xe0..=0xff => v.visit_i8(m as i8),
            0xa0..=0xbf => self.str(usize::from(m & 0x1f), v),
            0x90..=0x9f => self.seq(usize::from(m & 0x0f), v),
            0x80..=0x8f => self.map(usize::from(m & 0x0f), v),
            0xc0 => v.visit_unit(),
            0xc2 => v.visit_bool(false),
            0xc3 => v.visit_bool(true),
            0xcc => v.visit_u8(self.byte()?),
            0xcd => v.visit_u16(u16::from_be_bytes(self.array()?)),
            0xce => v.visit_u32(u32::from_be_bytes(self.array()?)),
            0xcf => v.visit_u64(u64::from_be_bytes(self.array()?)),
            0xd0 => v.visit_i8(i8::from_be_bytes(self.array()?)),
            0xd1 => v.visit_i16(i16::from_be_bytes(self.array()?)),
            0xd2 => v.visit_i32(i32::from_be_bytes(self.array()?)),
            0xd3 => v.visit_i64(i64::from_be_bytes(self.array()?)),
            0xca => v.visit_f32(f32::from_be_bytes(self.array()?)),
            0xcb => v.visit_f64(f64::from_be_bytes(self.array()?)),
            0xd9..=0xdb => {
                let len = self.len(1 << (m - 0xd9))?;
                self.str(len, v)
            }
            0xdc | 0xdd => {
                let len = self.len(2 << (m - 0xdc))?;
                self.seq(len, v)
            }
            0xde | 0xdf => {
                let len = self.len(2 << (m - 0xde))?;
                self.map(len, v)
            }
            0xc4..=0xc6 if bytes => {
                let len = self.len(1 << (m - 0xc4))?;
                v.visit_borrowed_bytes(self.take(len)?)
            }
            // Bytes where a sequence is wanted, extension types, the reserved marker.
            _ => Err(GiveUp),
        }
    }
}

/// Elements of an array, or pairs of a map, still to be read.
struct Access<'a, 'de> {
    r: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = GiveUp;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, GiveUp> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, GiveUp> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GiveUp> {
        seed.deserialize(&mut *self.r)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum's variant: `{variant: value}` (`unit: false`) or a bare variant (`unit: true`).
struct Variant<'a, 'de> {
    r: &'a mut Reader<'de>,
    unit: bool,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = GiveUp;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), GiveUp> {
        let v = seed.deserialize(&mut *self.r)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = GiveUp;

    fn unit_variant(self) -> Result<(), GiveUp> {
        if self.unit {
            return Ok(());
        }
        match self.r.byte()? {
            0xc0 => Ok(()),
            _ => Err(GiveUp),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, GiveUp> {
        if self.unit {
            return Err(GiveUp);
        }
        seed.deserialize(self.r)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, GiveUp> {
        if self.unit {
            return Err(GiveUp);
        }
        self.r.any(v, false)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], v: V) -> Result<V::Value, GiveUp> {
        if self.unit {
            return Err(GiveUp);
        }
        self.r.any(v, false)
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = GiveUp;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.any(v, true)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        if self.rest.first() == Some(&0xc0) {
            self.rest = &self.rest[1..];
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, GiveUp> {
        match self.peek_map_len() {
            Some((1, header)) => {
                self.rest = &self.rest[header..];
                v.visit_enum(Variant { r: self, unit: false })
            }
            Some(_) => Err(GiveUp),
            None => v.visit_enum(Variant { r: self, unit: true }),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value, GiveUp> {
        // `rmp_serde` reads its extension type through a newtype of this name.
        if name == "_ExtStruct" {
            return Err(GiveUp);
        }
        v.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, GiveUp> {
        match self.rest.first() {
            Some(0xc0 | 0x90) => {
                self.rest = &self.rest[1..];
                v.visit_unit()
            }
            _ => self.any(v, true),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.any(v, false)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, GiveUp> {
        self.any(v, false)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, GiveUp> {
        self.any(v, false)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, GiveUp> {
        self.any(v, false)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, GiveUp> {
        Err(GiveUp)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, GiveUp> {
        Err(GiveUp)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.num(v)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit map identifier ignored_any
    }
}
