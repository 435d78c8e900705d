// theme.js switches the page's colours at once when a theme is chosen in
// the header, and keeps the choice on the server as the form would.
//
// Without it the form posts and the page comes back in the new theme. With
// it, the pressed button's data-media becomes the dark stylesheet's media
// and its data-scheme the color-scheme meta (the server's mapping, see
// views/theme.go), a "themechange" event tells the charts to take the new
// colours, and the form is posted in the background for the cookie
// (<form data-kept> says the choice once the server has it).

const form = document.querySelector('form[data-testid="theme"]');

function apply(button) {
  document.getElementById('theme-dark').media = button.dataset.media;
  document.querySelector('meta[name="color-scheme"]').content = button.dataset.scheme;
  for (const b of form.querySelectorAll('button[name="theme"]')) b.setAttribute('aria-pressed', String(b === button));
  document.dispatchEvent(new Event('themechange'));
}

form?.addEventListener('submit', async (e) => {
  const button = e.submitter;
  if (!button?.dataset.media) return;
  e.preventDefault();
  apply(button);
  let kept = false;
  try {
    // The answer is a redirect back to this page: not followed, its cookie is kept.
    const res = await fetch(form.action, { method: 'POST', body: new URLSearchParams(new FormData(form, button)), redirect: 'manual' });
    kept = res.type === 'opaqueredirect' || res.ok;
    if (kept) form.dataset.kept = button.value; // the choice the server holds
  } catch {
    // Said below, by posting the form as without scripts.
  }
  if (!kept) {
    // The server did not take it (signed out, say): post the form itself,
    // which shows why.
    const choice = Object.assign(document.createElement('input'), { type: 'hidden', name: 'theme', value: button.value });
    form.append(choice);
    form.submit();
  }
});
