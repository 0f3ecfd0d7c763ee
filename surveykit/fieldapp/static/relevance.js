// Relevance expressions, evaluated on the tablet exactly as surveykit/instruments/relevance.py
// evaluates them on the server. tests/relevance_vectors.json holds the cases both must agree on.
// XLSForm's spelling is accepted too: ${q}, "=", not(...), count-selected(${q}), and '' meaning
// "unanswered" in an equality.

export const MAX_LENGTH = 1000;
export const MAX_DEPTH = 32;

export class RelevanceError extends Error {
  constructor(message, position) {
    super(`${message} at character ${position}`);
    this.reason = message;
    this.position = position;
  }
}

const QUESTION_ID = /^[a-z][a-z0-9_]{0,63}$/;
const ID_CHARS = /[A-Za-z0-9_]*/y;
const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /-?[0-9]+(?:\.[0-9]+)?/y;
const NUMBER_TAIL = /[A-Za-z0-9_.]/y;
const KEYWORD_VALUES = { true: true, false: false, null: null };
const KEYWORDS = new Set(["and", "or", "not", "in", "true", "false", "null"]);
const OPERATORS = ["==", "!=", "<=", ">=", "=", "<", ">", "(", ")", "[", "]", ","];
const OPERATOR_KINDS = { "=": "==" };
const COMPARISONS = new Set(["==", "!=", "<", "<=", ">", ">="]);
const LITERAL_KINDS = new Set(["string", "number", "true", "false", "null"]);
const ESCAPES = new Set(["\\", "'", '"']);
const FUNCTIONS = new Set(["answered", "count", "count-selected", "selected"]);
const FUNCTION_ALIASES = { "count-selected": "count" };
const COUNT_SELECTED_TAIL = "-selected";
const WHITESPACE = new Set([" ", "\t", "\r", "\n"]);
// The characters Python's str.strip() removes (str.isspace), which differ from String.trim's.
const PY_SPACE = new Set(
  [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
    0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
    0x2028, 0x2029, 0x202f, 0x205f, 0x3000].map((c) => String.fromCharCode(c)),
);

function sticky(re, source, at) {
  re.lastIndex = at;
  const m = re.exec(source);
  return m && m.index === at ? m[0] : null;
}

function describe(token) {
  if (token.kind === "end") return "end of expression";
  // Python slices code points; so does Array.from.
  const chars = Array.from(token.text);
  const text = chars.length <= 30 ? token.text : chars.slice(0, 27).join("") + "...";
  if (token.kind === "string" || token.kind === "number" || token.kind === "ref") {
    return `${token.kind === "ref" ? "reference" : token.kind} ${text}`;
  }
  return `'${text}'`;
}

// Positions count code points, as Python's do; the loop walks UTF-16 units and maps at the end.
function tokenize(source) {
  const tokens = [];
  let i = 0;
  while (i < source.length) {
    const ch = source[i];
    if (WHITESPACE.has(ch)) { i += 1; continue; }
    const start = i;
    if (ch === "'" || ch === '"') {
      const [value, end] = readString(source, start);
      i = end;
      tokens.push({ kind: "string", text: source.slice(start, i), position: start, value });
    } else if (ch === "$") {
      const braced = source.startsWith("{", i + 1);
      const opening = braced ? "${" : "$";
      const ident = sticky(ID_CHARS, source, i + opening.length) || "";
      if (!ident) throw new RelevanceError(`expected a question id after '${opening}'`, start);
      if (!QUESTION_ID.test(ident)) throw new RelevanceError(`invalid question id '${ident}'`, start);
      i += opening.length + ident.length;
      if (braced) {
        if (!source.startsWith("}", i)) throw new RelevanceError(`expected '}' after '\${${ident}'`, start);
        i += 1;
      }
      tokens.push({ kind: "ref", text: source.slice(start, i), position: start, value: ident });
    } else if (sticky(NUMBER, source, i) !== null) {
      const text = sticky(NUMBER, source, i);
      i += text.length;
      if (i < source.length && sticky(NUMBER_TAIL, source, i) !== null) {
        throw new RelevanceError("invalid number", start);
      }
      tokens.push({ kind: "number", text, position: start, value: Number(text) });
    } else if (sticky(NAME, source, i) !== null) {
      let text = sticky(NAME, source, i);
      i += text.length;
      if (text === "count" && source.startsWith(COUNT_SELECTED_TAIL, i)) {
        text += COUNT_SELECTED_TAIL;
        i += COUNT_SELECTED_TAIL.length;
      }
      const kind = KEYWORDS.has(text) ? text : "name";
      tokens.push({ kind, text, position: start, value: KEYWORD_VALUES[text] ?? null });
    } else {
      const op = OPERATORS.find((o) => source.startsWith(o, i));
      if (op === undefined) {
        const shown = String.fromCodePoint(source.codePointAt(i));
        throw new RelevanceError(`unexpected character ${pyRepr(shown)}`, start);
      }
      i += op.length;
      tokens.push({ kind: OPERATOR_KINDS[op] ?? op, text: op, position: start });
    }
  }
  tokens.push({ kind: "end", text: "", position: source.length });
  return tokens;
}

function pyRepr(ch) {
  return ch === "'" ? `"'"` : `'${ch}'`;
}

function readString(source, start) {
  const quote = source[start];
  let out = "";
  let i = start + 1;
  while (i < source.length) {
    const ch = source[i];
    if (ch === quote) return [out, i + 1];
    if (ch === "\\") {
      if (i + 1 >= source.length) break;
      const escaped = source[i + 1];
      if (!ESCAPES.has(escaped)) throw new RelevanceError(`invalid escape '\\${escaped}' in string`, i);
      out += escaped;
      i += 2;
      continue;
    }
    out += ch;
    i += 1;
  }
  throw new RelevanceError("unterminated string", start);
}

// --- values, with Python's semantics ------------------------------------------------------

const isBool = (v) => typeof v === "boolean";
const isNumber = (v) => typeof v === "number";
const isString = (v) => typeof v === "string";
const isList = (v) => Array.isArray(v);
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function lookup(answers, id) {
  if (!isObject(answers) || !Object.prototype.hasOwnProperty.call(answers, id)) return null;
  const value = answers[id];
  return value === undefined ? null : value;
}

// Python's ==, where True == 1 and lists and dicts compare element by element.
function pyEquals(a, b) {
  if ((isBool(a) || isNumber(a)) && (isBool(b) || isNumber(b))) return Number(a) === Number(b);
  if (isString(a) && isString(b)) return a === b;
  if (a === null || b === null) return a === b;
  if (isList(a) && isList(b)) return a.length === b.length && a.every((x, k) => pyEquals(x, b[k]));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length
      && keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && pyEquals(a[k], b[k]));
  }
  return false;
}

function equal(left, right) {
  // A yes/no answer of true must not match the number 1 (nor false match 0).
  if (isBool(left) !== isBool(right)) return false;
  return pyEquals(left, right);
}

// Python orders strings by code point; JavaScript's < by UTF-16 unit.
function compareStrings(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  const n = Math.min(x.length, y.length);
  for (let k = 0; k < n; k += 1) {
    const d = x[k].codePointAt(0) - y[k].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function ordered(op, left, right) {
  let d;
  if (isNumber(left) && isNumber(right)) d = left - right;
  else if (isString(left) && isString(right)) d = compareStrings(left, right);
  else return false;
  if (op === "<") return d < 0;
  if (op === "<=") return d <= 0;
  if (op === ">") return d > 0;
  return d >= 0;
}

function pyStrip(s) {
  const chars = Array.from(s);
  let a = 0;
  let b = chars.length;
  while (a < b && PY_SPACE.has(chars[a])) a += 1;
  while (b > a && PY_SPACE.has(chars[b - 1])) b -= 1;
  return chars.slice(a, b).join("");
}

export function answered(value) {
  if (value === null || value === undefined) return false;
  if (isString(value)) return pyStrip(value).length > 0;
  if (isList(value)) return value.length > 0;
  return true;
}

function count(value) {
  if (isList(value)) return value.length;
  return answered(value) ? 1 : 0;
}

function selected(value, choice) {
  if (isList(value)) return value.some((item) => equal(item, choice));
  return isString(value) && equal(value, choice);
}

function pyTruth(value) {
  if (value === null || value === undefined) return false;
  if (isString(value) || isList(value)) return value.length > 0;
  if (isObject(value)) return Object.keys(value).length > 0;
  return Boolean(value);
}

// --- syntax tree ---------------------------------------------------------------------------

const Node = {
  literal: (value) => ({
    resolve: () => value, truth: () => pyTruth(value), refs: () => [], emptyString: value === "",
  }),
  reference: (id) => ({
    resolve: (a) => lookup(a, id), truth: (a) => answered(lookup(a, id)), refs: () => [id],
  }),
  call: (fn, id, choice) => {
    const resolve = (a) => {
      const v = lookup(a, id);
      if (fn === "answered") return answered(v);
      if (fn === "count") return count(v);
      return selected(v, choice ?? "");
    };
    return { resolve, truth: (a) => pyTruth(resolve(a)), refs: () => [id] };
  },
  comparison: (op, left, right) => {
    const truth = (a) => {
      const l = left.resolve(a);
      const r = right.resolve(a);
      // Compared with the literal '', the other side is asked "unanswered?" (XLSForm's meaning).
      const other = right.emptyString ? left : left.emptyString ? right : null;
      if (other !== null && (op === "==" || op === "!=")) {
        const unanswered = !answered(other.resolve(a));
        return op === "==" ? unanswered : !unanswered;
      }
      if (op === "==") return equal(l, r);
      if (op === "!=") return !equal(l, r);
      return ordered(op, l, r);
    };
    return { resolve: truth, truth, refs: () => [...left.refs(), ...right.refs()] };
  },
  membership: (operand, options, negated) => {
    const truth = (a) => {
      const v = operand.resolve(a);
      return options.some((o) => equal(v, o)) !== negated;
    };
    return { resolve: truth, truth, refs: () => operand.refs() };
  },
  not: (operand) => {
    const truth = (a) => !operand.truth(a);
    return { resolve: truth, truth, refs: () => operand.refs() };
  },
  and: (operands) => {
    const truth = (a) => operands.every((n) => n.truth(a));
    return { resolve: truth, truth, refs: () => operands.flatMap((n) => n.refs()) };
  },
  or: (operands) => {
    const truth = (a) => operands.some((n) => n.truth(a));
    return { resolve: truth, truth, refs: () => operands.flatMap((n) => n.refs()) };
  },
};

// --- parser --------------------------------------------------------------------------------

class Parser {
  constructor(source) {
    this.tokens = tokenize(source);
    this.index = 0;
    this.depth = 0;
  }

  get current() { return this.tokens[this.index]; }

  peek() { return this.tokens[Math.min(this.index + 1, this.tokens.length - 1)]; }

  advance() {
    const token = this.tokens[this.index];
    if (token.kind !== "end") this.index += 1;
    return token;
  }

  unexpected(token, expected = "") {
    const suffix = expected ? `, expected ${expected}` : "";
    return new RelevanceError(`unexpected ${describe(token)}${suffix}`, token.position);
  }

  nested(token, fn) {
    this.depth += 1;
    if (this.depth > MAX_DEPTH) {
      throw new RelevanceError(`expression is nested deeper than ${MAX_DEPTH} levels`, token.position);
    }
    try { return fn(); } finally { this.depth -= 1; }
  }

  parse() {
    if (this.current.kind === "end") throw new RelevanceError("empty expression", 0);
    const node = this.parseOr();
    if (this.current.kind !== "end") throw this.unexpected(this.current);
    return node;
  }

  parseOr() {
    const operands = [this.parseAnd()];
    while (this.current.kind === "or") { this.advance(); operands.push(this.parseAnd()); }
    return operands.length === 1 ? operands[0] : Node.or(operands);
  }

  parseAnd() {
    const operands = [this.parseNot()];
    while (this.current.kind === "and") { this.advance(); operands.push(this.parseNot()); }
    return operands.length === 1 ? operands[0] : Node.and(operands);
  }

  parseNot() {
    if (this.current.kind !== "not") return this.parseComparison();
    const token = this.advance();
    return this.nested(token, () => Node.not(this.parseNot()));
  }

  parseComparison() {
    const left = this.parseOperand();
    const token = this.current;
    if (COMPARISONS.has(token.kind)) {
      this.advance();
      return Node.comparison(token.kind, left, this.parseOperand());
    }
    if (token.kind === "in") {
      this.advance();
      return Node.membership(left, this.parseList(), false);
    }
    if (token.kind === "not" && this.peek().kind === "in") {
      this.advance();
      this.advance();
      return Node.membership(left, this.parseList(), true);
    }
    return left;
  }

  parseList() {
    const opening = this.current;
    if (opening.kind !== "[") throw this.unexpected(opening, "a list literal after 'in'");
    this.advance();
    if (this.current.kind === "]") throw new RelevanceError("empty list after 'in'", opening.position);
    const items = [this.parseListItem()];
    while (this.current.kind === ",") { this.advance(); items.push(this.parseListItem()); }
    if (this.current.kind !== "]") throw this.unexpected(this.current, "',' or ']'");
    this.advance();
    return items;
  }

  parseListItem() {
    const token = this.current;
    if (!LITERAL_KINDS.has(token.kind)) throw this.unexpected(token, "a literal list item");
    this.advance();
    return token.value;
  }

  parseOperand() {
    const token = this.current;
    if (LITERAL_KINDS.has(token.kind)) { this.advance(); return Node.literal(token.value); }
    if (token.kind === "ref") { this.advance(); return Node.reference(token.value); }
    if (token.kind === "(") {
      this.advance();
      const node = this.nested(token, () => this.parseOr());
      if (this.current.kind !== ")") throw this.unexpected(this.current, "')'");
      this.advance();
      return node;
    }
    if (token.kind === "name") {
      if (this.peek().kind === "(") return this.parseCall();
      const hint = KEYWORDS.has(token.text.toLowerCase())
        ? "keywords are lowercase" : "question references start with '$'";
      throw new RelevanceError(`unknown name '${token.text}' (${hint})`, token.position);
    }
    if (token.kind === "[") throw new RelevanceError("list literals are only allowed after 'in'", token.position);
    throw this.unexpected(token, "a value");
  }

  parseCall() {
    const name = this.advance();
    if (!FUNCTIONS.has(name.text)) {
      const hint = FUNCTIONS.has(name.text.toLowerCase()) ? " (function names are lowercase)" : "";
      throw new RelevanceError(`unknown function '${name.text}'${hint}`, name.position);
    }
    this.advance();
    const args = [];
    if (this.current.kind !== ")") {
      args.push(this.parseArgument(name.text));
      while (this.current.kind === ",") { this.advance(); args.push(this.parseArgument(name.text)); }
    }
    const closing = this.current;
    if (closing.kind !== ")") throw this.unexpected(closing, "',' or ')'");
    this.advance();
    const fn = FUNCTION_ALIASES[name.text] ?? name.text;
    const wanted = fn === "selected" ? 2 : 1;
    if (args.length !== wanted) {
      const position = args.length > wanted ? args[wanted].position : closing.position;
      const plural = wanted > 1 ? "s" : "";
      throw new RelevanceError(
        `${name.text}() takes exactly ${wanted} argument${plural} (${args.length} given)`, position,
      );
    }
    if (args[0].kind !== "ref") {
      throw new RelevanceError(`${name.text}() expects a $reference, not ${describe(args[0])}`, args[0].position);
    }
    if (fn !== "selected") return Node.call(fn, args[0].value, null);
    if (args[1].kind !== "string") {
      throw new RelevanceError(`selected() expects a string value, not ${describe(args[1])}`, args[1].position);
    }
    return Node.call(name.text, args[0].value, args[1].value);
  }

  parseArgument(fn) {
    const token = this.current;
    if (token.kind !== "ref" && !LITERAL_KINDS.has(token.kind)) {
      throw this.unexpected(token, `a $reference or literal as argument of ${fn}()`);
    }
    this.advance();
    return token;
  }
}

// Python counts positions in code points; map a UTF-16 index to that count.
function codePointIndex(source, unitIndex) {
  return Array.from(source.slice(0, unitIndex)).length;
}

export function parse(source) {
  if (typeof source !== "string") throw new TypeError("relevance expression must be a string");
  if (Array.from(source).length > MAX_LENGTH) {
    throw new RelevanceError(`expression is longer than ${MAX_LENGTH} characters`, MAX_LENGTH);
  }
  let root;
  try {
    root = new Parser(source).parse();
  } catch (err) {
    if (err instanceof RelevanceError) throw new RelevanceError(err.reason, codePointIndex(source, err.position));
    throw err;
  }
  return {
    source,
    references: new Set(root.refs()),
    evaluate: (answers) => root.truth(answers),
  };
}
