//! Vectors kept from one event to the next whose elements borrow from the event, so the hot path
//! allocates none per event.

/// Empties `values` and gives it another element type, keeping its allocation. The standard
/// library collects a consumed vector in place when the element types have the same size and
/// alignment, as the callers' types do (they differ only in lifetime); were that ever not the
/// case, this would allocate a new vector, never misbehave.
pub(crate) fn recycle<T, U>(mut values: Vec<T>) -> Vec<U> {
    values.clear();
    values.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_is_kept_for_elements_of_another_lifetime() {
        let text = String::from("borrowed");
        let mut first: Vec<&str> = Vec::with_capacity(8);
        first.push(&text);
        let at = first.as_ptr().cast::<u8>();
        let second: Vec<&'static str> = recycle(first);
        assert!(second.is_empty());
        assert_eq!((second.as_ptr().cast::<u8>(), second.capacity()), (at, 8));
    }
}
