//! Intervals on the real line with open or closed ends: the building block of the policy's
//! score conditions and of the unreachable-rule analysis.

/// An interval `lo..hi`, each end open or closed. `(-inf, +inf)` is the whole line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub lo_closed: bool,
    pub hi: f64,
    pub hi_closed: bool,
}

impl Interval {
    /// The whole real line.
    pub const ALL: Interval = Interval { lo: f64::NEG_INFINITY, lo_closed: false, hi: f64::INFINITY, hi_closed: false };

    /// True when `x` lies in the interval.
    #[inline]
    pub fn contains(&self, x: f64) -> bool {
        let above = if self.lo_closed { x >= self.lo } else { x > self.lo };
        let below = if self.hi_closed { x <= self.hi } else { x < self.hi };
        above && below
    }

    /// True when no number lies in the interval.
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi || (self.lo == self.hi && !(self.lo_closed && self.hi_closed))
    }

    /// The intersection of two intervals.
    pub fn intersect(&self, other: &Interval) -> Interval {
        let (lo, lo_closed) = if self.lo > other.lo {
            (self.lo, self.lo_closed)
        } else if other.lo > self.lo {
            (other.lo, other.lo_closed)
        } else {
            (self.lo, self.lo_closed && other.lo_closed)
        };
        let (hi, hi_closed) = if self.hi < other.hi {
            (self.hi, self.hi_closed)
        } else if other.hi < self.hi {
            (other.hi, other.hi_closed)
        } else {
            (self.hi, self.hi_closed && other.hi_closed)
        };
        Interval { lo, lo_closed, hi, hi_closed }
    }

    /// True when every number of `inner` lies in `self`.
    pub fn covers(&self, inner: &Interval) -> bool {
        if inner.is_empty() {
            return true;
        }
        let lo_ok = self.lo < inner.lo || (self.lo == inner.lo && (self.lo_closed || !inner.lo_closed));
        let hi_ok = self.hi > inner.hi || (self.hi == inner.hi && (self.hi_closed || !inner.hi_closed));
        lo_ok && hi_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(lo: f64, lo_closed: bool, hi: f64, hi_closed: bool) -> Interval {
        Interval { lo, lo_closed, hi, hi_closed }
    }

    #[test]
    fn membership_respects_open_and_closed_ends() {
        let i = iv(0.6, true, 0.85, false);
        assert!(i.contains(0.6));
        assert!(!i.contains(0.85));
        assert!(i.contains(0.849_999));
        assert!(!iv(0.6, false, 0.9, false).contains(0.6));
    }

    #[test]
    fn emptiness_and_intersection() {
        assert!(iv(0.5, true, 0.5, false).is_empty());
        assert!(!iv(0.5, true, 0.5, true).is_empty());
        assert!(iv(0.9, false, 0.5, false).is_empty());
        let x = iv(0.0, true, 0.7, false).intersect(&iv(0.7, true, 1.0, true));
        assert!(x.is_empty());
        let y = iv(0.0, true, 0.7, true).intersect(&iv(0.7, true, 1.0, true));
        assert!(!y.is_empty() && y.contains(0.7));
    }

    #[test]
    fn cover() {
        let outer = iv(0.6, true, 1.0, true);
        assert!(outer.covers(&iv(0.6, false, 0.9, true)));
        assert!(!iv(0.6, false, 1.0, true).covers(&iv(0.6, true, 0.9, true)));
        assert!(Interval::ALL.covers(&outer));
        assert!(outer.covers(&iv(2.0, false, 1.0, false)));
    }
}
