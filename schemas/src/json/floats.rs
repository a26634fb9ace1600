//! The shortest texts of the floats one event's records carry, each formatted once.
//!
//! A router that writes an event's routed record and its audit record both in JSON (the audit
//! record unsealed, for a chainer in its process) writes the same risk score, confidence and
//! explanation contributions in each. Formatting a float in shortest form costs a few hundred
//! instructions; copying its text back costs a few dozen.

use super::text::JsonNumber;

/// The texts of the floats written so far for one event, by their bits. Emptied per event
/// with [`FloatTexts::clear`]; a handful of entries, so a look-up is a scan.
#[derive(Debug, Default)]
pub struct FloatTexts {
    /// A float's bits and where its text is in `text`.
    index: Vec<(u64, usize, usize)>,
    text: Vec<u8>,
}

impl FloatTexts {
    /// Forgets every text (the next event's floats are others).
    pub fn clear(&mut self) {
        self.index.clear();
        self.text.clear();
    }

    /// Appends what [`super::write_number`] writes for `value`, formatting it only the first
    /// time: equal bits, equal text.
    pub(crate) fn write(&mut self, value: f64, out: &mut Vec<u8>) {
        let bits = value.to_bits();
        match self.index.iter().find(|(b, _, _)| *b == bits) {
            Some(&(_, start, end)) => out.extend_from_slice(&self.text[start..end]),
            None => {
                let at = out.len();
                value.write_json(out);
                let start = self.text.len();
                self.text.extend_from_slice(&out[at..]);
                self.index.push((bits, start, self.text.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_written_again_is_copied_with_the_same_text() {
        let mut floats = FloatTexts::default();
        let values = [0.1 + 0.2, -0.0, 0.0, 1e300, f64::NAN, f64::INFINITY, 5e-324, 12.5];
        for round in 0..2 {
            for v in values {
                let (mut cached, mut direct) = (Vec::new(), Vec::new());
                floats.write(v, &mut cached);
                super::super::write_number(&mut direct, &v);
                assert_eq!(cached, direct, "round {round}: {v}");
            }
        }
        // `0.0` and `-0.0` are told apart by their bits; the second round found every value.
        assert_eq!(floats.index.len(), values.len());
        floats.clear();
        assert!(floats.index.is_empty() && floats.text.is_empty());
    }
}
