// Progressive enhancement shared by every console page (the pages work without it).
// A page's own behaviour goes in a module of its own next to this one, loaded by its template.

// Forms marked data-confirm="question" ask before they are sent (retire, revoke, deactivate...).
function askBeforeSending(event) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) {
    return;
  }
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
}

document.addEventListener("submit", askBeforeSending);
