//! Python regular expressions run by PCRE2's JIT: the minor-safety lexicon's and normaliser's patterns.
//!
//! `detectors/minor_safety/pcre.py` writes each Python pattern out in PCRE2's syntax meaning for meaning (Python's
//! `\w`, `\d` and `\s` as explicit code point sets, since PCRE2's Unicode tables are another version's); this side
//! only compiles and searches. A search that PCRE2 cannot finish within its limits raises `PatternLimitError`, and
//! the caller asks Python's `re` instead, so no answer ever differs from `re`'s.

use pcre2::bytes::{Regex, RegexBuilder};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use regex::{RegexSet, RegexSetBuilder};

create_exception!(
    native,
    PatternLimitError,
    PyException,
    "PCRE2 stopped a search at one of its limits; Python's re gives the answer instead."
);

/// The JIT's stack: the default 32 KiB stops backtracking over a few kilobytes of text.
const JIT_STACK_BYTES: usize = 8 << 20;

fn limit_error(error: pcre2::Error) -> PyErr {
    PatternLimitError::new_err(error.to_string())
}

/// One translated pattern, behind its prefilter: a pattern without lookarounds for Rust's `regex`, whose matches
/// include the pattern's, so that a DFA pass rules most texts out before PCRE2 backtracks through them.
#[pyclass(frozen, module = "detectors.native")]
pub struct Pattern {
    regex: Regex,
    prefilter: regex::Regex,
}

#[pymethods]
impl Pattern {
    #[new]
    fn new(source: &str, prefilter: &str) -> PyResult<Self> {
        let regex = RegexBuilder::new()
            .utf(true)
            .jit_if_available(true)
            .max_jit_stack_size(Some(JIT_STACK_BYTES))
            .build(source)
            .map_err(|error| {
                PyValueError::new_err(format!("PCRE2 refused the pattern: {error}"))
            })?;
        let prefilter = regex::Regex::new(prefilter).map_err(|error| {
            PyValueError::new_err(format!("the prefilter did not compile: {error}"))
        })?;
        Ok(Self { regex, prefilter })
    }

    /// Whether the pattern matches anywhere in `text`, as `re.search(...) is not None`.
    fn search(&self, text: &str) -> PyResult<bool> {
        Ok(self.prefilter.is_match(text)
            && self.regex.is_match(text.as_bytes()).map_err(limit_error)?)
    }

    /// `text` with every match replaced by itself less each match of `inner` within it, as
    /// `self.sub(lambda m: inner.sub("", m.group(0)), text)`: the same string object when the pattern does not
    /// match (no match is empty, so a match moves `copied` past 0). Neither pattern may match the empty string (the
    /// caller checks), so the two agree on where each next search starts.
    fn delete_within<'py>(
        &self,
        text: &Bound<'py, PyString>,
        inner: &Pattern,
    ) -> PyResult<Bound<'py, PyString>> {
        let whole = text.to_str()?;
        if !self.prefilter.is_match(whole) {
            return Ok(text.clone());
        }
        let mut kept = String::with_capacity(whole.len());
        let mut copied = 0;
        for found in self.regex.find_iter(whole.as_bytes()) {
            let found = found.map_err(limit_error)?;
            kept.push_str(&whole[copied..found.start()]);
            let matched = &whole[found.start()..found.end()];
            let mut inner_copied = 0;
            for removed in inner.regex.find_iter(matched.as_bytes()) {
                let removed = removed.map_err(limit_error)?;
                kept.push_str(&matched[inner_copied..removed.start()]);
                inner_copied = removed.end();
            }
            kept.push_str(&matched[inner_copied..]);
            copied = found.end();
        }
        if copied == 0 {
            return Ok(text.clone()); // nothing matched
        }
        kept.push_str(&whole[copied..]);
        Ok(PyString::new(text.py(), &kept))
    }
}

/// Patterns searched together: one call answers for all of them. Each comes with a prefilter, a pattern without
/// lookarounds whose matches include the pattern's; one DFA pass over the text runs every prefilter, and PCRE2 then
/// searches only for the patterns whose prefilter matched.
#[pyclass(frozen, module = "detectors.native")]
pub struct PatternSet {
    patterns: Vec<Py<Pattern>>,
    prefilters: RegexSet,
}

#[pymethods]
impl PatternSet {
    #[new]
    fn new(patterns: Vec<Py<Pattern>>, prefilters: Vec<String>) -> PyResult<Self> {
        if patterns.len() > 64 || patterns.len() != prefilters.len() {
            return Err(PyValueError::new_err(
                "a PatternSet holds at most 64 patterns, each with one prefilter",
            ));
        }
        let prefilters = RegexSetBuilder::new(prefilters).build().map_err(|error| {
            PyValueError::new_err(format!("a prefilter did not compile: {error}"))
        })?;
        Ok(Self {
            patterns,
            prefilters,
        })
    }

    /// Bit `i` set when pattern `i` matches somewhere in `text`; only the patterns whose bit is set in `among`.
    fn matching(&self, text: &str, among: u64) -> PyResult<u64> {
        let subject = text.as_bytes();
        let mut found = 0u64;
        for index in self.prefilters.matches(text).iter() {
            let bit = 1u64 << index;
            if among & bit != 0
                && self.patterns[index]
                    .get()
                    .regex
                    .is_match(subject)
                    .map_err(limit_error)?
            {
                found |= bit;
            }
        }
        Ok(found)
    }
}
