// The coding page: a passage selected in an answer fills the "apply a code" form (the answer, and
// its first and last character), and coded passages take their code's colour. The page works
// without it: the characters can be typed in, and quotes have forms of their own.
//
// The server counts characters as Unicode code points; a JavaScript string counts UTF-16 units,
// in which an emoji (or any character beyond U+FFFF) is two. Every offset is converted here.

const HEX_COLOUR = /^#[0-9a-fA-F]{6}$/;

export function codePointLength(text) {
  let count = 0;
  for (const _character of text) {
    count += 1;
  }
  return count;
}

// The passage of `range` inside `container` as code point offsets, or null when it is empty or
// reaches outside the container.
export function passageOffsets(container, range) {
  if (range.collapsed || !container.contains(range.startContainer) || !container.contains(range.endContainer)) {
    return null;
  }
  const before = document.createRange();
  before.selectNodeContents(container);
  before.setEnd(range.startContainer, range.startOffset);
  const start = codePointLength(before.toString());
  const length = codePointLength(range.toString());
  return length > 0 ? { start, end: start + length, text: range.toString() } : null;
}

function fillForm(questionId, passage) {
  const form = document.getElementById("apply-form");
  if (!form) {
    return;
  }
  form.elements.question_id.value = questionId;
  form.elements.start.value = String(passage.start);
  form.elements.end.value = String(passage.end);
  const shown = document.getElementById("selected-passage");
  if (shown) {
    shown.textContent = `“${passage.text}” (${passage.start}–${passage.end})`;
  }
}

function readSelection() {
  const selection = document.getSelection();
  if (!selection || selection.rangeCount === 0) {
    return;
  }
  const range = selection.getRangeAt(0);
  for (const container of document.querySelectorAll(".answer-text[data-question]")) {
    const passage = passageOffsets(container, range);
    if (passage) {
      fillForm(container.dataset.question, passage);
      return;
    }
  }
}

function colourPassages() {
  for (const mark of document.querySelectorAll("mark.coded[data-colour]")) {
    const colour = mark.dataset.colour;
    if (HEX_COLOUR.test(colour)) {
      // A CSS property set through the DOM, which the Content-Security-Policy allows (inline
      // style attributes it does not).
      mark.style.setProperty("--code-colour", colour);
    }
  }
}

document.addEventListener("selectionchange", readSelection);
colourPassages();
