// The storefront page: plain DOM code over the REST API, no framework, no build step.
//
// - the product grid is a REST query built from the filters (categoryId, price=le=,
//   inStock, sort(), limit(start,end)); "Show more" fetches the next page;
// - the cart belongs to a session id kept in localStorage; adding is POST /CartItem/
//   (409 when the stock is short), checking out is POST /Cart/<session>/checkout;
// - stock shown on screen follows other shoppers live: an EventSource on
//   /Product/?id=a|id=b|... (the products on screen and in the cart) delivers their
//   current state, then every change, as "put" events of the whole record.
'use strict';

(() => {
  const PAGE = 60;
  const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
  // Percent-encodes a value for a URL path segment or a query condition, including the
  // characters the query language gives a meaning to: ( ) ! * '.
  const enc = (v) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  // Past this many products to watch, the stream covers the category (or the whole table)
  // instead of naming each product.
  const MAX_WATCHED = 150;
  const $ = (id) => document.getElementById(id);

  const state = {
    category: '',
    maxPrice: '',
    inStock: false,
    sort: '+name',
    offset: 0,
    loadToken: 0,
    shown: new Map(), // product id -> record currently on screen
    cards: new Map(), // product id -> its <article>
    categories: new Map(), // category id -> record
    cart: [],
    live: 'connecting',
  };

  // The cart belongs to a guest session the server hands out (POST /auth/session). Its
  // access token stays in memory and goes out as a Bearer header on every call; the
  // server also keeps an HttpOnly refresh cookie, so a reload resumes the same session.
  let sessionId = null;
  let accessToken = null;

  async function startSession() {
    try {
      const res = await fetch('/auth/session', { method: 'POST', headers: { accept: 'application/json' } });
      if (!res.ok) return false;
      const data = await res.json();
      accessToken = data.accessToken;
      sessionId = data.principal && data.principal.id;
      document.body.dataset.session = sessionId || '';
      return Boolean(accessToken && sessionId);
    } catch (_) {
      return false;
    }
  }

  // ---- small helpers ---------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k.startsWith('aria')) el.setAttribute('aria-' + k.slice(4).toLowerCase(), v);
      else el[k] = v;
    }
    el.append(...children.filter((c) => c !== null && c !== undefined));
    return el;
  }

  async function api(method, path, body, retried) {
    const init = { method, headers: { accept: 'application/json' } };
    if (accessToken) init.headers.authorization = 'Bearer ' + accessToken;
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { ok: false, status: 0, data: { message: 'The server cannot be reached.' } };
    }
    // An expired access token: resume the session (same cart) and try once more.
    if (res.status === 401 && !retried && await startSession()) {
      return api(method, path, body, true);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    return { ok: res.ok, status: res.status, data };
  }

  function errorMessage(r) {
    if (r.data && typeof r.data === 'object' && r.data.message) return r.data.message;
    if (typeof r.data === 'string' && r.data) return r.data;
    return `The request failed (HTTP ${r.status}).`;
  }

  function toast(message, isError) {
    const el = h('div', { className: 'toast' + (isError ? ' error' : ''), role: isError ? 'alert' : 'status' }, message);
    $('toasts').append(el);
    setTimeout(() => el.remove(), isError ? 6000 : 3500);
  }

  function imageFor(p) {
    return p.imageUrl || `/images/${enc(p.categoryId || 'other')}.svg`;
  }

  // ---- categories ------------------------------------------------------------------

  async function loadCategories() {
    const r = await api('GET', '/Category/');
    if (!r.ok || !Array.isArray(r.data)) {
      toast('Categories could not be loaded: ' + errorMessage(r), true);
      return;
    }
    const nav = $('categories');
    r.data.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    for (const c of r.data) {
      state.categories.set(c.id, c);
      nav.append(h('button', {
        type: 'button',
        className: 'chip',
        dataset: { category: c.id },
        ariaPressed: 'false',
        title: c.description || c.name,
      }, h('img', { src: `/images/${enc(c.id)}.svg`, alt: '' }), String(c.name)));
    }
    renderSummary();
  }

  function selectCategory(id) {
    if (id === state.category) return;
    state.category = id;
    for (const chip of $('categories').querySelectorAll('.chip')) {
      chip.setAttribute('aria-pressed', String(chip.dataset.category === id));
    }
    loadProducts(true);
  }

  // ---- products --------------------------------------------------------------------

  function productQuery(offset) {
    const parts = [];
    if (state.category) parts.push('categoryId=' + enc(state.category));
    const max = parseFloat(state.maxPrice);
    if (Number.isFinite(max) && max >= 0) parts.push('price=le=' + max);
    if (state.inStock) parts.push('inStock=true');
    parts.push(`sort(${state.sort})`);
    // One more than a page, to know whether there is a next page.
    parts.push(`limit(${offset},${offset + PAGE + 1})`);
    return '/Product/?' + parts.join('&');
  }

  async function loadProducts(reset) {
    const token = ++state.loadToken;
    const grid = $('products');
    const offset = reset ? 0 : state.offset;
    grid.setAttribute('aria-busy', 'true');
    const r = await api('GET', productQuery(offset));
    if (token !== state.loadToken) return; // a newer query has started
    grid.setAttribute('aria-busy', 'false');
    if (!r.ok || !Array.isArray(r.data)) {
      toast('Products could not be loaded: ' + errorMessage(r), true);
      return;
    }
    const rows = r.data;
    const more = rows.length > PAGE;
    if (more) rows.length = PAGE;
    if (reset) {
      grid.textContent = '';
      state.shown.clear();
      state.cards.clear();
      window.scrollTo({ top: 0 });
    }
    for (const p of rows) {
      if (state.cards.has(p.id)) continue;
      const el = card(p);
      state.shown.set(p.id, p);
      state.cards.set(p.id, el);
      grid.append(el);
    }
    if (state.shown.size === 0) {
      grid.append(h('p', { className: 'empty' }, 'No products match these filters.'));
    }
    state.offset = offset + rows.length;
    $('more').hidden = !more;
    renderSummary();
    watch();
  }

  function renderSummary() {
    const bits = [];
    const c = state.categories.get(state.category);
    bits.push(`${state.shown.size}${$('more').hidden ? '' : '+'} products`);
    if (c) bits.push(`in ${c.name}`);
    const max = parseFloat(state.maxPrice);
    if (Number.isFinite(max) && max >= 0) bits.push(`up to ${money.format(max)}`);
    if (state.inStock) bits.push('in stock');
    $('summary').textContent = bits.join(' · ');
  }

  function card(p) {
    const qty = h('input', { type: 'number', min: '1', value: '1', inputMode: 'numeric', ariaLabel: 'Quantity', className: 'qty' });
    const add = h('button', { type: 'button', className: 'add' }, 'Add to cart');
    add.addEventListener('click', () => {
      const n = parseInt(qty.value, 10);
      addToCart(p.id, Number.isFinite(n) && n > 0 ? n : 1, add);
    });
    const el = h('article', { className: 'product', dataset: { id: p.id, category: p.categoryId || '' } },
      h('img', { src: imageFor(p), alt: '', loading: 'lazy', width: 400, height: 300 }),
      h('div', { className: 'body' },
        h('h3', { className: 'name' }),
        h('p', { className: 'desc' }),
        h('div', { className: 'meta' }, h('span', { className: 'price' }), h('span', { className: 'stock' })),
        h('div', { className: 'add-row' }, qty, add)));
    updateCard(el, p);
    return el;
  }

  function updateCard(el, p) {
    el.querySelector('.name').textContent = String(p.name ?? p.id);
    el.querySelector('.desc').textContent = p.description || '';
    el.querySelector('.price').textContent = money.format(Number(p.price) || 0);
    const n = Number(p.stockQuantity) || 0;
    const available = p.inStock !== false && n > 0;
    const stock = el.querySelector('.stock');
    stock.textContent = !available ? 'Out of stock' : n <= 3 ? `Only ${n} left` : `${n} in stock`;
    stock.className = 'stock' + (!available ? ' out' : n <= 3 ? ' low' : '');
    el.dataset.stock = String(available ? n : 0);
    el.dataset.price = String(Number(p.price) || 0);
    el.querySelector('.add').disabled = !available;
    el.querySelector('.qty').max = String(Math.max(n, 1));
  }

  function flash(el) {
    el.classList.remove('flash');
    void el.offsetWidth; // restart the animation
    el.classList.add('flash');
  }

  // ---- live stock (Server-Sent Events) -----------------------------------------------

  let source = null;
  let sourceUrl = null;
  let retry = null;
  let watchTimer = null;

  function setLive(s) {
    state.live = s;
    const el = $('live');
    el.dataset.state = s;
    $('live-text').textContent = s === 'live' ? 'live' : s === 'off' ? 'offline' : 'connecting';
  }

  // The stream to listen to: the products on screen and in the cart, by id; the current
  // category (or everything) when that list gets long.
  function streamUrl() {
    const ids = new Set(state.shown.keys());
    for (const item of state.cart) ids.add(item.productId);
    if (ids.size === 0) return null;
    if (ids.size > MAX_WATCHED) {
      return '/Product/' + (state.category ? '?categoryId=' + enc(state.category) : '');
    }
    return '/Product/?' + [...ids].sort().map((id) => 'id=' + enc(id)).join('|');
  }

  // Called whenever what is on screen changes; coalesces bursts into one reconnection.
  function watch() {
    clearTimeout(watchTimer);
    watchTimer = setTimeout(() => {
      const url = streamUrl();
      if (url !== sourceUrl || !source) subscribe(url);
    }, 50);
  }

  function subscribe(url) {
    clearTimeout(retry);
    if (source) source.close();
    source = null;
    sourceUrl = url;
    if (!url) return;
    if (!('EventSource' in window)) {
      setLive('off');
      return;
    }
    // On connecting, the server first sends the current state of every product watched
    // (as puts), so nothing changed in between is missed.
    const es = new EventSource(url);
    source = es;
    if (state.live !== 'live') setLive('connecting');
    const handle = (e) => { if (source === es) onEvent(e); };
    es.onopen = () => { if (source === es) setLive('live'); };
    es.onmessage = handle;
    for (const type of ['put', 'delete', 'unmatched', 'resync']) es.addEventListener(type, handle);
    es.onerror = () => {
      if (source !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // Not an event stream (or refused): try again later; the browser retries by
        // itself only after network errors.
        setLive('off');
        source = null;
        retry = setTimeout(() => subscribe(sourceUrl), 5000);
      } else {
        setLive('connecting');
      }
    };
  }

  function onEvent(e) {
    let msg;
    try { msg = JSON.parse(e.data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    if (state.live !== 'live') setLive('live');
    switch (msg.type) {
      case 'put':
        if (msg.value && typeof msg.value === 'object') applyProduct(msg.id ?? msg.value.id, msg.value);
        break;
      case 'delete':
        productGone(msg.id);
        break;
      case 'unmatched':
        // No longer matches the stream's filter (only when it follows a category):
        // whatever is on screen stays until the next query.
        break;
      case 'resync':
        // The current state of every product follows as puts; nothing to drop, since
        // each put replaces what a card shows.
        break;
      default:
        break;
    }
  }

  function applyProduct(id, value) {
    const before = state.shown.get(id);
    const el = state.cards.get(id);
    if (before && el) {
      state.shown.set(id, value);
      updateCard(el, value);
      if (before.stockQuantity !== value.stockQuantity || before.price !== value.price) flash(el);
    }
    if (state.cart.some((item) => item.productId === id)) {
      for (const item of state.cart) {
        if (item.productId === id && item.product) {
          item.product = { ...item.product, name: value.name, price: value.price, imageUrl: value.imageUrl };
        }
      }
      renderCart();
    }
  }

  function productGone(id) {
    const el = state.cards.get(id);
    if (!el) return;
    const p = { ...state.shown.get(id), stockQuantity: 0, inStock: false };
    state.shown.set(id, p);
    updateCard(el, p);
    el.querySelector('.stock').textContent = 'No longer sold';
  }

  // ---- cart ------------------------------------------------------------------------

  async function loadCart() {
    if (!sessionId) return;
    const q = `/CartItem/?sessionId=${enc(sessionId)}&select(id,productId,quantity,addedAt,product{name,price,imageUrl,categoryId})`;
    const r = await api('GET', q);
    if (!r.ok || !Array.isArray(r.data)) {
      toast('The cart could not be loaded: ' + errorMessage(r), true);
      return;
    }
    state.cart = r.data.sort((a, b) =>
      String(a.addedAt || '').localeCompare(String(b.addedAt || '')) || String(a.id).localeCompare(String(b.id)));
    renderCart();
    watch();
  }

  function renderCart() {
    const list = $('cart-items');
    list.textContent = '';
    let count = 0;
    let total = 0;
    for (const item of state.cart) {
      const p = item.product || {};
      const qty = Number(item.quantity) || 0;
      const price = Number(p.price) || 0;
      count += qty;
      total += qty * price;
      const remove = h('button', { type: 'button', className: 'remove' }, 'Remove');
      remove.addEventListener('click', () => removeItem(item.id, remove));
      list.append(h('li', { dataset: { id: item.id, productId: item.productId } },
        h('img', { src: imageFor({ ...p, id: item.productId }), alt: '' }),
        h('div', {},
          h('div', { className: 'name' }, String(p.name || item.productId)),
          h('div', { className: 'qty' }, `${qty} × ${money.format(price)}`),
          remove),
        h('div', { className: 'line' }, money.format(qty * price))));
    }
    $('cart-count').textContent = String(count);
    $('cart-total').textContent = money.format(total);
    $('cart-empty').hidden = state.cart.length > 0;
    $('checkout').disabled = state.cart.length === 0;
  }

  async function addToCart(productId, quantity, button) {
    button.disabled = true;
    const r = await api('POST', '/CartItem/', { productId, sessionId, quantity });
    const p = state.shown.get(productId);
    const el = state.cards.get(productId);
    if (el && p) updateCard(el, p); else button.disabled = false;
    if (r.ok) {
      toast(`Added ${quantity} × ${p ? p.name : productId} to the cart`);
      $('checkout-result').hidden = true;
      await loadCart();
    } else {
      toast(errorMessage(r), true);
    }
  }

  async function removeItem(id, button) {
    button.disabled = true;
    const r = await api('DELETE', `/CartItem/${enc(id)}`);
    if (!r.ok) toast(errorMessage(r), true);
    await loadCart();
  }

  async function checkout() {
    const button = $('checkout');
    button.disabled = true;
    const r = await api('POST', `/Cart/${enc(sessionId)}/checkout`);
    if (r.ok && r.data && typeof r.data === 'object') {
      showReceipt(r.data);
      toast('Thank you! Your order is placed.');
    } else if (r.status === 404) {
      toast('Your cart is empty.', true);
    } else {
      toast(errorMessage(r), true);
    }
    await loadCart();
    // With live updates the stream brings the new stock; without them, ask again.
    if (r.ok && state.live !== 'live') loadProducts(true);
  }

  function showReceipt(order) {
    const box = $('checkout-result');
    const lines = Array.isArray(order.lines) ? order.lines : Array.isArray(order.items) ? order.items : [];
    const list = h('ul', {});
    for (const l of lines) {
      const qty = Number(l.quantity) || 0;
      const lineTotal = l.lineTotal ?? qty * (Number(l.unitPrice ?? l.price) || 0);
      list.append(h('li', {}, `${qty} × ${l.name || l.productId} — ${money.format(Number(lineTotal) || 0)}`));
    }
    const count = order.itemCount ?? lines.reduce((n, l) => n + (Number(l.quantity) || 0), 0);
    box.textContent = '';
    box.append(
      h('h3', {}, 'Order placed'),
      list,
      h('p', { className: 'order-total' }, `${count} item${count === 1 ? '' : 's'}, total ${money.format(Number(order.total) || 0)}`));
    box.hidden = false;
  }

  function openCart(open) {
    const cart = $('cart');
    cart.classList.toggle('open', open);
    cart.setAttribute('aria-hidden', String(!open));
    $('cart-button').setAttribute('aria-expanded', String(open));
    $('backdrop').hidden = !open;
    if (open) loadCart();
  }

  // ---- wiring ----------------------------------------------------------------------

  function init() {
    $('categories').addEventListener('click', (e) => {
      const chip = e.target.closest('.chip');
      if (chip) selectCategory(chip.dataset.category || '');
    });
    let priceTimer = null;
    $('max-price').addEventListener('input', (e) => {
      clearTimeout(priceTimer);
      priceTimer = setTimeout(() => {
        state.maxPrice = e.target.value;
        loadProducts(true);
      }, 250);
    });
    $('in-stock').addEventListener('change', (e) => {
      state.inStock = e.target.checked;
      loadProducts(true);
    });
    $('sort').addEventListener('change', (e) => {
      state.sort = e.target.value;
      loadProducts(true);
    });
    $('filters').addEventListener('submit', (e) => e.preventDefault());
    $('more').addEventListener('click', () => loadProducts(false));
    $('cart-button').addEventListener('click', () => openCart(!$('cart').classList.contains('open')));
    $('cart-close').addEventListener('click', () => openCart(false));
    $('backdrop').addEventListener('click', () => openCart(false));
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') openCart(false); });
    $('checkout').addEventListener('click', checkout);

    loadCategories();
    loadProducts(true);
    startSession().then((ok) => {
      if (ok) loadCart();
      else toast('No shopping session could be started; the cart is unavailable.', true);
    });
  }

  init();
})();
