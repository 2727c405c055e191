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

/// The most set operations and joins one statement may chain (`UNION`, `EXCEPT`, `INTERSECT`,
/// `JOIN` and the commas of a `FROM` list). They need no bracket or operator to chain, and
/// each one is a level of the plan, which the planner and every optimizer pass recurse
/// through with far larger frames than an expression's: on a 2 MiB stack in a debug build, 256
/// `EXCEPT`s (the heaviest) plan and run and 300 overflowed; the server's threads have 16 MiB.
pub const MAX_CHAINED_RELATIONS: usize = 256;

/// Refuses `text` when an expression in it could nest deeper than [`MAX_EXPRESSION_DEPTH`],
/// or when it chains more than [`MAX_CHAINED_RELATIONS`] set operations and joins.
///
/// The expression bound counts, along the innermost open bracket and every bracket around
/// it, the operators since the last comma (list items are siblings, not nested) plus the
/// brackets themselves. A tree node needs an operator or a bracket to sit below another, so
/// the tree is never deeper than the bound; the bound is loose only for a long `CASE`, whose
/// branches reset it. Set operations and joins are counted over the whole text, brackets or
/// not: a plan is never deeper than their number plus its brackets.
pub fn check_expression_depth(text: &str) -> Result<()> {
    let dialect = DatabricksDialect {};
    // A text the tokenizer refuses is left to the parser, which says what is wrong.
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return Ok(());
    };
    // The open brackets (the outermost: the text itself); `depth` is the sum of their
    // operators plus the brackets open.
    let mut open: Vec<Bracket> = vec![Bracket::default()];
    let mut depth = 0usize;
    let mut relations = 0usize;
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
            Token::Comma => {
                if open.last().is_some_and(|bracket| bracket.in_from) {
                    relations += 1;
                }
                restart_item(&mut open, &mut depth)
            }
            Token::SemiColon => restart_item(&mut open, &mut depth),
            Token::Word(word)
                if matches!(word.keyword, Keyword::WHEN | Keyword::THEN | Keyword::ELSE) =>
            {
                restart_item(&mut open, &mut depth)
            }
            Token::Word(word) if starts_from_list(word.keyword) => set_in_from(&mut open, true),
            Token::Word(word) if chains_relations(word.keyword) => {
                relations += 1;
                if word.keyword != Keyword::JOIN {
                    set_in_from(&mut open, false);
                }
            }
            Token::Word(word) if ends_from_list(word.keyword) => set_in_from(&mut open, false),
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
        if relations > MAX_CHAINED_RELATIONS {
            return Err(Error::invalid(format!(
                "The statement chains too many relations: at most {MAX_CHAINED_RELATIONS} set \
                 operations (UNION, EXCEPT, INTERSECT) and joins are accepted in one statement \
                 (write the rows to a table, or use VALUES, and read that instead)"
            )));
        }
    }
    Ok(())
}

/// One open bracket of the text (or the text itself).
#[derive(Debug, Default)]
struct Bracket {
    /// Operators counted in the bracket's current list item.
    operators: usize,
    /// Whether the bracket is inside a `FROM` list, where each comma is one more join.
    in_from: bool,
}

fn starts_from_list(keyword: Keyword) -> bool {
    keyword == Keyword::FROM
}

/// Set operations and joins: each is one more level of the plan.
fn chains_relations(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS | Keyword::JOIN
    )
}

/// The clauses after a `FROM` list, whose commas separate other things.
fn ends_from_list(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::QUALIFY
            | Keyword::WINDOW
            | Keyword::SELECT
            | Keyword::SET
            | Keyword::VALUES
            | Keyword::SORT
            | Keyword::CLUSTER
            | Keyword::DISTRIBUTE
    )
}

fn set_in_from(open: &mut [Bracket], in_from: bool) {
    if let Some(current) = open.last_mut() {
        current.in_from = in_from;
    }
}

fn bump(open: &mut [Bracket]) {
    if let Some(current) = open.last_mut() {
        current.operators += 1;
    }
}

fn open_bracket(open: &mut Vec<Bracket>, depth: &mut usize) {
    bump(open);
    open.push(Bracket::default());
    *depth += 2;
}

fn close(open: &mut Vec<Bracket>, depth: &mut usize) {
    if open.len() > 1
        && let Some(inner) = open.pop()
    {
        *depth = depth.saturating_sub(inner.operators + 1);
    }
}

fn restart_item(open: &mut [Bracket], depth: &mut usize) {
    if let Some(current) = open.last_mut() {
        *depth = depth.saturating_sub(current.operators);
        current.operators = 0;
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
    fn long_chains_of_set_operations_and_joins_are_refused() {
        let too_many = MAX_CHAINED_RELATIONS + 1;
        let tables: Vec<String> = (0..=too_many).map(|i| format!("t{i}")).collect();
        for text in [
            format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(too_many)),
            format!("SELECT 1{}", " EXCEPT SELECT 2".repeat(too_many)),
            format!("SELECT 1{}", " INTERSECT (SELECT 1)".repeat(too_many)),
            format!("SELECT * FROM a{}", " CROSS JOIN b".repeat(too_many)),
            format!("SELECT * FROM a{}", " LEFT JOIN b ON true".repeat(too_many)),
            format!("SELECT * FROM {}", tables.join(", ")),
            format!("SELECT * FROM (SELECT * FROM {}) x", tables.join(", ")),
        ] {
            let err = check_expression_depth(&text).expect_err("refused");
            assert!(
                err.message.contains("too many relations"),
                "{}",
                err.message
            );
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
            format!(
                "SELECT 1{}",
                " UNION ALL SELECT 1".repeat(MAX_CHAINED_RELATIONS)
            ),
            // Commas outside a FROM list are not joins.
            format!(
                "SELECT {}, 1 FROM a, b WHERE x IN ({}) GROUP BY 1, 2 ORDER BY 1, 2",
                columns.join(", "),
                in_list.join(", ")
            ),
            format!(
                "SELECT * FROM a JOIN b ON a.x = b.x, c WHERE y = 1{}",
                " UNION SELECT * FROM d, e WHERE substring(s FROM 1 FOR 2) IN ('a', 'b')"
                    .repeat(MAX_CHAINED_RELATIONS / 4)
            ),
        ] {
            check_expression_depth(&text).expect("accepted");
        }
    }
}
