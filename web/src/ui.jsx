// Small shared components.

export function Problem({ error, what }) {
  if (!error) return null;
  if (error.notAvailable) {
    return <p class="note" data-not-available>{what || 'This'} is not available on this server.</p>;
  }
  if (error.status === 403) {
    return <p class="refused" data-refused>Refused: {error.message}</p>;
  }
  return <p class="error" role="alert">{error.message}</p>;
}

export function State({ state }) {
  return <span class={`state state-${state}`} data-state={state}>{state}</span>;
}

export function Loading() {
  return <p class="muted">Loading...</p>;
}
