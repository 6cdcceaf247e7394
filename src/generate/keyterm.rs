//! The key-term usage score (the paper's §4.6, measured): for titles `ACRONYM: full name`, does an
//! abstract use the acronym?
//!
//! The paper observed that generated abstracts often fail to use the key term of the title (e.g.
//! "BERT") that a real abstract would. For every title whose part before the first colon is one
//! acronym-like word, the score is the fraction of abstracts that contain that word, for the
//! generated and for the real abstracts of the same titles.

/// The acronym of a title of the form `ACRONYM: full name`, e.g. `BERT` in "BERT: Pre-training
/// of Deep Bidirectional Transformers". The part before the first colon must be a single word of
/// letters, digits, `-`, `+` or `.`, start with a letter, and hold at least two capitals (BERT,
/// XLNet, RoBERTa, ELMo, GPT-2, SQuAD). Titles like "Attention: a survey" have none.
pub fn acronym(title: &str) -> Option<&str> {
    let (head, rest) = title.split_once(':')?;
    let word = head.trim();
    if rest.trim().is_empty() || word.is_empty() || word.chars().count() > 24 {
        return None;
    }
    let first = word.chars().next()?;
    let ok_chars = word
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '+' | '.'));
    let capitals = word.chars().filter(|c| c.is_uppercase()).count();
    (first.is_alphabetic() && ok_chars && capitals >= 2).then_some(word)
}

/// Whether `text` uses `term` as a word: case-sensitive, not inside a longer word; a plural or
/// possessive (`BERTs`, `BERT's`) counts.
pub fn uses_term(text: &str, term: &str) -> bool {
    if term.is_empty() {
        return false;
    }
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(term).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let mut after = text[i + m.len()..].chars();
        let next = after.next();
        let plural_end = next == Some('s') && !after.next().is_some_and(word_char);
        before.is_none_or(|c| !word_char(c)) && (next.is_none_or(|c| !word_char(c)) || plural_end)
    })
}

/// `Some(uses)` for a title with an acronym, `None` otherwise (the `samples.uses_acronym` column).
pub fn title_term_used(title: &str, text: &str) -> Option<bool> {
    acronym(title).map(|a| uses_term(text, a))
}

/// Counts for the score over a set of (title, generated, real) abstracts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeytermScore {
    /// Generated abstracts whose title has an acronym.
    pub generated: usize,
    pub generated_using: usize,
    /// Real abstracts (distinct titles) whose title has an acronym.
    pub real: usize,
    pub real_using: usize,
}

impl KeytermScore {
    pub fn add_generated(&mut self, title: &str, text: &str) {
        if let Some(u) = title_term_used(title, text) {
            self.generated += 1;
            self.generated_using += u as usize;
        }
    }
    pub fn add_real(&mut self, title: &str, text: &str) {
        if let Some(u) = title_term_used(title, text) {
            self.real += 1;
            self.real_using += u as usize;
        }
    }
    pub fn generated_fraction(&self) -> Option<f64> {
        (self.generated > 0).then(|| self.generated_using as f64 / self.generated as f64)
    }
    pub fn real_fraction(&self) -> Option<f64> {
        (self.real > 0).then(|| self.real_using as f64 / self.real as f64)
    }
    /// One line for the terminal; the real abstracts' fraction only when there were any.
    pub fn describe(&self, with_real: bool) -> String {
        let frac = |f: Option<f64>, k: usize, n: usize| match f {
            Some(f) => format!("{:.0}% ({k}/{n})", 100.0 * f),
            None => "n/a (no `ACRONYM: ...` titles)".to_string(),
        };
        let mut line = format!(
            "key-term usage (titles `ACRONYM: ...`): generated {}",
            frac(
                self.generated_fraction(),
                self.generated_using,
                self.generated
            )
        );
        if with_real {
            line += &format!(
                ", real {}",
                frac(self.real_fraction(), self.real_using, self.real)
            );
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_acronyms_in_titles() {
        let yes = [
            (
                "BERT: Pre-training of Deep Bidirectional Transformers",
                "BERT",
            ),
            ("XLNet: Generalized Autoregressive Pretraining", "XLNet"),
            (
                "RoBERTa: A Robustly Optimized BERT Pretraining Approach",
                "RoBERTa",
            ),
            ("  ELMo : Deep contextualized word representations", "ELMo"),
            (
                "GPT-2: Language Models are Unsupervised Multitask Learners",
                "GPT-2",
            ),
            (
                "SQuAD: 100,000+ Questions for Machine Comprehension of Text",
                "SQuAD",
            ),
        ];
        for (title, a) in yes {
            assert_eq!(acronym(title), Some(a), "{title}");
        }
        for title in [
            "Attention Is All You Need",
            "Attention: a survey",
            "Deep Learning for NLP: A Survey",
            "BERT:",
            "2D: something",
            "Bert: lowercase",
        ] {
            assert_eq!(acronym(title), None, "{title}");
        }
    }

    #[test]
    fn term_usage_is_word_bounded() {
        assert!(uses_term("We introduce BERT, a model.", "BERT"));
        assert!(uses_term("BERT is new", "BERT"));
        assert!(uses_term("ends with BERT", "BERT"));
        assert!(uses_term("BERT's layers and BERTs", "BERT"));
        assert!(uses_term("(GPT-2) works", "GPT-2"));
        assert!(!uses_term("RoBERTa improves", "BERT"));
        assert!(!uses_term("BERTology studies", "BERT"));
        assert!(!uses_term("bert in lower case", "BERT"));
        assert!(!uses_term("nothing here", "BERT"));
    }

    #[test]
    fn score_counts_only_acronym_titles() {
        let mut s = KeytermScore::default();
        s.add_generated("BERT: Pre-training", "We propose BERT.");
        s.add_generated("BERT: Pre-training", "We propose a model.");
        s.add_generated("Attention Is All You Need", "BERT everywhere");
        s.add_real("BERT: Pre-training", "We introduce BERT.");
        assert_eq!(
            (s.generated, s.generated_using, s.real, s.real_using),
            (2, 1, 1, 1)
        );
        assert_eq!(s.generated_fraction(), Some(0.5));
        assert_eq!(s.real_fraction(), Some(1.0));
        let line = s.describe(true);
        assert!(
            line.contains("generated 50% (1/2), real 100% (1/1)"),
            "{line}"
        );
        assert!(!s.describe(false).contains("real"));
        assert!(KeytermScore::default().describe(true).contains("n/a"));
    }
}
