//! A bound on how deep the expression tree of a piece of SQL text can be, checked on its tokens
//! before anything parses it. sqlparser parses a flat chain (`1+1+...+1`) in a loop, without
//! its recursion limit, into a tree as deep as the chain is long; DataFusion's planner, its
//! optimizer and the tree's own drop then recurse once per level, and a few hundred levels
//! overflow a thread's stack, which aborts the whole process. Every place user text becomes an
//! expression (statements, predicates, on-demand features) asks here first.

use deltalake::datafusion::sql::sqlparser::dialect::DatabricksDialect;
use deltalake::datafusion::sql::sqlparser::keywords::Keyword;
use deltalake::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tarn_core::{Error, Result};

/// The deepest expression accepted: operators chained in one list item plus the brackets
/// around it. A 500-way `OR` of comparisons (1,000 levels: each `=` and `OR`) passes; the
/// planner was measured to run 4x deeper than this on a 2 MiB stack.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Refuses `text` when an expression in it could nest deeper than [`MAX_EXPRESSION_DEPTH`].
///
/// The bound counts, along the innermost open bracket and every bracket around it, the
/// operators since the last comma (list items are siblings, not nested) plus the brackets
/// themselves. A tree node needs an operator or a bracket to sit below another, so the tree is
/// never deeper than the bound; the bound is loose only for a long `CASE`, whose branches
/// reset it.
pub fn check_expression_depth(text: &str) -> Result<()> {
    let dialect = DatabricksDialect {};
    // A text the tokenizer refuses is left to the parser, which says what is wrong.
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return Ok(());
    };
    // Operators counted in the current item of each open bracket (the outermost: the text);
    // `depth` is their sum plus the brackets open.
    let mut open: Vec<usize> = vec![0];
    let mut depth = 0usize;
    for token in &tokens {
        match token {
            // An opening bracket is a level in the item it stands in (`x[1][2]` nests without
            // the brackets themselves nesting) and one more for its contents.
            Token::LParen | Token::LBracket | Token::LBrace => open_bracket(&mut open, &mut depth),
            Token::Word(word) if word.keyword == Keyword::CASE => {
                open_bracket(&mut open, &mut depth)
            }
            Token::RParen | Token::RBracket | Token::RBrace => close(&mut open, &mut depth),
            Token::Word(word) if word.keyword == Keyword::END && open.len() > 1 => {
                close(&mut open, &mut depth)
            }
            Token::Comma | Token::SemiColon => restart_item(&mut open, &mut depth),
            Token::Word(word)
                if matches!(word.keyword, Keyword::WHEN | Keyword::THEN | Keyword::ELSE) =>
            {
                restart_item(&mut open, &mut depth)
            }
            token if is_operator(token) => {
                depth += 1;
                bump(&mut open);
            }
            _ => {}
        }
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(Error::invalid(format!(
                "The expression nests too deeply: at most {MAX_EXPRESSION_DEPTH} levels of \
                 operators and brackets are accepted (split a long chain of AND/OR into IN lists \
                 or a join with a table of values)"
            )));
        }
    }
    Ok(())
}

fn bump(open: &mut [usize]) {
    if let Some(current) = open.last_mut() {
        *current += 1;
    }
}

fn open_bracket(open: &mut Vec<usize>, depth: &mut usize) {
    bump(open);
    open.push(0);
    *depth += 2;
}

fn close(open: &mut Vec<usize>, depth: &mut usize) {
    if open.len() > 1
        && let Some(inner) = open.pop()
    {
        *depth = depth.saturating_sub(inner + 1);
    }
}

fn restart_item(open: &mut [usize], depth: &mut usize) {
    if let Some(current) = open.last_mut() {
        *depth = depth.saturating_sub(*current);
        *current = 0;
    }
}

/// Whether `token` can put an operand one level below another: every operator symbol and the
/// keywords that act as operators. Names, literals, commas and periods (compound names are
/// flat) cannot.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::XOR
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::RLIKE
                | Keyword::REGEXP
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::EXISTS
                | Keyword::INTERVAL
                | Keyword::CAST
                | Keyword::TRY_CAST
        ),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Whitespace(_)
        | Token::Period => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(op: &str, terms: usize) -> String {
        vec!["x"; terms].join(op)
    }

    #[test]
    fn long_flat_chains_and_deep_nesting_are_refused() {
        for text in [
            format!("SELECT {}", chain("+", 100_000)),
            format!("SELECT 1 FROM t WHERE {}", chain(" AND ", 100_000)),
            format!("SELECT {}x{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("SELECT {}1", "- ".repeat(100_000)),
            format!("SELECT {}1", "NOT ".repeat(100_000)),
            format!("SELECT x{}", "[1]".repeat(100_000)),
            format!("SELECT {}1{}", "f(".repeat(100_000), ")".repeat(100_000)),
            format!(
                "SELECT {}1{}",
                "CASE WHEN ".repeat(5_000),
                " END".repeat(5_000)
            ),
            // Unbalanced closers cannot hide a chain.
            format!("SELECT {} {}", ")".repeat(5_000), chain("*", 5_000)),
            chain("+", MAX_EXPRESSION_DEPTH + 2),
        ] {
            let err = check_expression_depth(&text).expect_err("refused");
            assert!(err.message.contains("nests too deeply"), "{}", err.message);
        }
    }

    #[test]
    fn wide_statements_pass() {
        let columns: Vec<String> = (0..20_000).map(|i| format!("c{i} + 1 AS a{i}")).collect();
        let in_list: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
        let branches = " WHEN x = 1 AND y = 2 THEN 3".repeat(5_000);
        for text in [
            format!("SELECT {} FROM dev.bronze.events", columns.join(", ")),
            format!("SELECT * FROM t WHERE x IN ({})", in_list.join(", ")),
            format!("SELECT CASE{branches} ELSE 0 END FROM t"),
            format!(
                "SELECT 1 FROM t WHERE {}",
                (0..490)
                    .map(|i| format!("x = {i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            chain("+", MAX_EXPRESSION_DEPTH),
        ] {
            check_expression_depth(&text).expect("accepted");
        }
    }
}
