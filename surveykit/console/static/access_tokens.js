// My account: the copy button beside a token just created (without JavaScript, select and copy it).

function copyFrom(button) {
  const source = document.getElementById(button.dataset.copy);
  const done = button.parentElement.querySelector(".copy-done");
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    if (done) {
      done.hidden = false;
    }
  });
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  if (navigator.clipboard) {
    button.hidden = false;
    button.addEventListener("click", () => copyFrom(button));
  }
}
