//! The fold's fast path for picking a few fields out of a JSON object: one pass over the bytes,
//! no deserializer. It checks the grammar it meets exactly as serde_json does and answers only
//! for the common forms (plain field names, strings with simple escapes, numbers, literals, nested
//! objects and arrays up to a modest depth); for anything else (an escaped field name, a `\u`
//! escape, a control character, trailing text, invalid UTF-8) it answers `None` and the caller asks
//! serde_json, so that both paths accept and pick exactly the same. Picking through serde_json was
//! a quarter of the fold's CPU (a visitor per field, UTF-8 checked string by string).

/// Nesting deeper than this goes to serde_json (its own limit is 128).
const MAX_DEPTH: u32 = 64;

/// The raw text of the fields `names` of the JSON object `text` into `out` (a field repeated: the
/// last one). `Some(true)`: `text` is one JSON object; `Some(false)`: it does not start like one;
/// `None`: undecided here.
pub(crate) fn pick_fields<'a, S: AsRef<str>>(
    text: &'a [u8],
    names: &[S],
    out: &mut [Option<&'a str>],
) -> Option<bool> {
    let Ok(text) = std::str::from_utf8(text) else {
        return None;
    };
    let mut scan = Scan { b: text.as_bytes(), i: 0 };
    scan.ws();
    if scan.peek() != Some(b'{') {
        return Some(false);
    }
    scan.i += 1;
    scan.ws();
    if scan.peek() == Some(b'}') {
        scan.i += 1;
    } else {
        loop {
            if scan.peek()? != b'"' {
                return None;
            }
            let (start, end) = scan.string(false)?;
            let name = &scan.b[start..end];
            let at = names.iter().position(|n| n.as_ref().as_bytes() == name);
            scan.ws();
            if scan.peek()? != b':' {
                return None;
            }
            scan.i += 1;
            scan.ws();
            let from = scan.i;
            scan.value(0)?;
            if let Some(at) = at {
                out[at] = Some(&text[from..scan.i]);
            }
            scan.ws();
            match scan.peek()? {
                b',' => {
                    scan.i += 1;
                    scan.ws();
                }
                b'}' => {
                    scan.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    scan.ws();
    (scan.i == scan.b.len()).then_some(true)
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    /// The string at `i` (its opening quote): the span of its body. Simple escapes only where
    /// `escapes` (a field name with one would need unescaping before it is compared).
    #[inline]
    fn string(&mut self, escapes: bool) -> Option<(usize, usize)> {
        let start = self.i + 1;
        let mut i = start;
        loop {
            match *self.b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some((start, i));
                }
                b'\\' if escapes => match *self.b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    _ => return None,
                },
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - from
    }

    /// A number as JSON writes it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// One value from `i`, skipped (checked, not read).
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(true).map(|_| ()),
            b'{' => self.nested(depth + 1, b'}'),
            b'[' => self.nested(depth + 1, b']'),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object (`close` `}`) or array (`]`) from its opening bracket at `i`.
    fn nested(&mut self, depth: u32, close: u8) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            if close == b'}' {
                if self.peek()? != b'"' {
                    return None;
                }
                self.string(true)?;
                self.ws();
                if self.peek()? != b':' {
                    return None;
                }
                self.i += 1;
                self.ws();
            }
            self.value(depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}
