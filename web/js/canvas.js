// The seat map on a canvas: drawing (whole, or seat by seat), zoom,
// scrolling, and "which seat is under this point". It asks how each seat
// looks and which rings to draw; it decides nothing about seats itself.

// Default zoom keeps seats at least this far apart (CSS px): a finger needs
// more room than a mouse. The buyer can zoom in to MAX_PITCH_PX.
const MIN_PITCH_PX = 6;
const MIN_TAP_PITCH_PX = 12;
const MAX_PITCH_PX = 40;
const ZOOM_STEP = 1.5;
const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

// Room around the seats, in CSS px: the stage bar on top, then the section
// letters, then the seats.
const MAP_SIDE_PX = 12;
const STAGE_TOP_PX = 8;
const STAGE_HEIGHT_PX = 24;
const LABELS_PX = 24;
const MAP_BOTTOM_PX = 10;

/**
 * Draws a seat map on a canvas and answers "which seat is under this
 * point". Every seat is drawn inside its own square cell, so one changed
 * seat is redrawn by clearing and filling its cell alone: a diff of a few
 * seats costs a few fills, whatever the venue's size. Rings that cross cell
 * borders (keyboard focus, hover, seats that were just taken) live on a
 * second canvas on top, which is cleared and redrawn whole: it holds a
 * handful of rings at most.
 */
export class SeatCanvas {
  #canvas;
  #overlay;
  #scroller;
  #ctx;
  #octx;
  /** `(i) => 'free' | 'selected' | 'mine' | 'taken' | 'sold'` */
  #lookOf;
  /** `() => [{i, kind: 'focus' | 'hover' | 'flash'}]`: the rings wanted;
   *  the canvas blinks the flashing ones and shows focus only when visible. */
  #decorations;
  #map = null;
  #zoom = null; // a multiple of the fit-to-width scale; null until the buyer zooms
  #fit = 1;
  #scale = 1;
  #origin = { x: 0, y: 0 };
  #size = { width: 0, height: 0 };
  #dpr = 1;
  #colours = null;
  #dirty = new Set();
  #dirtyAll = false;
  #frame = 0;
  #middle = 0.5;

  constructor({ canvas, overlay, scroller, lookOf, decorations }) {
    this.#canvas = canvas;
    this.#overlay = overlay;
    this.#scroller = scroller;
    this.#ctx = canvas.getContext('2d');
    this.#octx = overlay.getContext('2d');
    this.#lookOf = lookOf;
    this.#decorations = decorations;
    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = this.#scroller.clientWidth;
      if (!this.#map || !width || width === lastWidth) return;
      lastWidth = width;
      this.#relayout(this.#viewMiddle());
    }).observe(scroller);
    scroller.addEventListener('scroll', () => this.#scrolled(), { passive: true });
  }

  /** The map drawn, or null. */
  get map() {
    return this.#map;
  }

  /** Draws a new map whole (a snapshot replaces everything). */
  show(map) {
    const first = !this.#map;
    this.#map = map;
    this.#relayout(first ? 0.5 : this.#viewMiddle());
  }

  clear() {
    this.#map = null;
    this.#dirty.clear();
    this.#ctx.clearRect(0, 0, this.#canvas.width, this.#canvas.height);
    this.#octx.clearRect(0, 0, this.#overlay.width, this.#overlay.height);
  }

  /** Seats whose look changed: redrawn on the next frame. */
  invalidate(seats) {
    for (const i of seats) this.#dirty.add(i);
    this.#schedule();
  }

  /** Colours changed (light or dark scheme): everything is redrawn. */
  invalidateAll() {
    this.#colours = null;
    this.#dirtyAll = true;
    this.#schedule();
  }

  /** The ring layer changed (focus, hover, flashing seats). */
  invalidateOverlay() {
    this.#schedule();
  }

  zoomIn() {
    this.#setZoom(this.#currentZoom() * ZOOM_STEP);
  }

  zoomOut() {
    this.#setZoom(this.#currentZoom() / ZOOM_STEP);
  }

  zoomToFit() {
    this.#setZoom(1);
  }

  /** The seat under a point of the page, or -1. */
  seatAt(clientX, clientY) {
    const map = this.#map;
    if (!map) return -1;
    const box = this.#canvas.getBoundingClientRect();
    const x = (clientX - box.left - this.#origin.x) / this.#scale;
    const y = (clientY - box.top - this.#origin.y) / this.#scale;
    const reach = map.pitch * 0.6;
    let best = -1;
    let bestDistance = reach * reach;
    map.seats.forEach((seat, i) => {
      const d = (seat.x - x) ** 2 + (seat.y - y) ** 2;
      if (d <= bestDistance) {
        best = i;
        bestDistance = d;
      }
    });
    return best;
  }

  /** A seat's centre in CSS px from the canvas' top-left corner. */
  centreOf(i) {
    const seat = this.#map.seats[i];
    return { x: this.#origin.x + seat.x * this.#scale, y: this.#origin.y + seat.y * this.#scale };
  }

  /** Scrolls the map sideways until seat `i` is in view. */
  reveal(i) {
    const { x } = this.centreOf(i);
    const view = this.#scroller;
    const margin = Math.min(60, view.clientWidth / 4);
    if (x < view.scrollLeft + margin || x > view.scrollLeft + view.clientWidth - margin) {
      view.scrollLeft = x - view.clientWidth / 2;
    }
  }

  /** Brings seat `i` into view: the map scrolls to it, the page to the map. */
  bringIntoView(i) {
    this.reveal(i);
    this.#scroller.scrollIntoView({ block: 'nearest', behavior: reducedMotion.matches ? 'auto' : 'smooth' });
  }

  /** Whether the map has the keyboard's focus, shown (not a mouse's click). */
  focusVisible() {
    return this.#canvas.matches(':focus-visible');
  }

  /** The pointer is over a seat: say it can be clicked. */
  setPointing(onSeat) {
    this.#canvas.style.cursor = onSeat ? 'pointer' : '';
  }

  #currentZoom() {
    return this.#scale / this.#fit;
  }

  #maxZoom() {
    return Math.max(1, MAX_PITCH_PX / (this.#fit * this.#map.pitch));
  }

  /** Zooms about the middle of what is in view. */
  #setZoom(zoom) {
    if (!this.#map) return;
    const middle = this.#viewMiddle();
    this.#zoom = Math.min(this.#maxZoom(), Math.max(1, zoom));
    this.#relayout(middle);
  }

  /** Where the middle of the view is, as a fraction of the map's width:
   *  kept on every scroll, so that a resize (which changes the view's width
   *  first) still knows what the buyer was looking at. */
  #viewMiddle() {
    return this.#middle;
  }

  #scrolled() {
    const view = this.#scroller;
    if (this.#size.width) this.#middle = (view.scrollLeft + view.clientWidth / 2) / this.#size.width;
  }

  /** Sizes the canvases for the current width and zoom, redraws, and
   *  scrolls so that `middle` (a fraction of the width) is in the middle. */
  #relayout(middle) {
    const map = this.#map;
    const view = this.#scroller;
    const available = Math.max(160, view.clientWidth - 1);
    const span = map.maxX - map.minX + map.pitch; // half a cell beyond each end seat
    this.#fit = Math.min((available - 2 * MAP_SIDE_PX) / span, MAX_PITCH_PX / map.pitch);
    // Until the buyer zooms, a narrow screen or a finger gets seats far
    // enough apart to tap, and the map scrolls sideways.
    const coarse = window.matchMedia('(pointer: coarse)').matches || available < 600;
    const wanted = (coarse ? MIN_TAP_PITCH_PX : MIN_PITCH_PX) / (this.#fit * map.pitch);
    const zoom = Math.min(this.#maxZoom(), Math.max(1, this.#zoom ?? wanted));
    const scale = this.#fit * zoom;
    const pitchPx = map.pitch * scale;
    this.#scale = scale;
    this.#origin = {
      x: MAP_SIDE_PX + pitchPx / 2 - map.minX * scale,
      y: STAGE_TOP_PX + STAGE_HEIGHT_PX + LABELS_PX + pitchPx / 2 - map.minY * scale,
    };
    const width = Math.floor(2 * MAP_SIDE_PX + span * scale);
    const height = Math.ceil(this.#origin.y + map.maxY * scale + pitchPx / 2 + MAP_BOTTOM_PX);
    this.#size = { width, height };
    this.#dpr = Math.min(2, window.devicePixelRatio || 1);
    for (const canvas of [this.#canvas, this.#overlay]) {
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
      canvas.width = Math.round(width * this.#dpr);
      canvas.height = Math.round(height * this.#dpr);
    }
    this.#dirtyAll = true;
    this.#draw();
    this.#scroller.scrollLeft = middle * width - this.#scroller.clientWidth / 2;
    this.#middle = middle;
  }

  #schedule() {
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#draw());
  }

  #draw() {
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    if (!this.#map) return;
    this.#colours ??= this.#readColours();
    const ctx = this.#ctx;
    ctx.setTransform(this.#dpr, 0, 0, this.#dpr, 0, 0);
    if (this.#dirtyAll) {
      ctx.clearRect(0, 0, this.#size.width, this.#size.height);
      this.#drawStage();
      this.#drawSectionLabels();
      for (let i = 0; i < this.#map.seats.length; i += 1) this.#drawSeat(i, false);
    } else {
      for (const i of this.#dirty) this.#drawSeat(i, true);
    }
    this.#dirtyAll = false;
    this.#dirty.clear();
    this.#drawOverlay();
  }

  #readColours() {
    const css = getComputedStyle(this.#canvas);
    const read = (name) => css.getPropertyValue(name).trim();
    const tiers = [];
    for (let k = 1; read(`--tier-${k}`); k += 1) tiers.push(read(`--tier-${k}`));
    return {
      tiers: tiers.length ? tiers : ['#3b4fd8'],
      selected: read('--seat-selected'),
      mine: read('--seat-mine'),
      taken: read('--seat-taken'),
      sold: read('--seat-sold'),
      flash: read('--seat-flash'),
      focus: read('--seat-focus'),
      hover: read('--seat-hover'),
      stage: read('--stage'),
      stageText: read('--stage-text'),
      label: read('--muted'),
      font: css.fontFamily,
    };
  }

  #drawStage() {
    const ctx = this.#ctx;
    const left = this.#origin.x + this.#map.minX * this.#scale;
    const right = this.#origin.x + this.#map.maxX * this.#scale;
    const width = Math.max(120, (right - left) * 0.5);
    const x = (left + right) / 2 - width / 2;
    ctx.fillStyle = this.#colours.stage;
    ctx.beginPath();
    ctx.roundRect(x, STAGE_TOP_PX, width, STAGE_HEIGHT_PX, 6);
    ctx.fill();
    ctx.fillStyle = this.#colours.stageText;
    ctx.font = `600 12px ${this.#colours.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('STAGE', x + width / 2, STAGE_TOP_PX + STAGE_HEIGHT_PX / 2 + 1);
  }

  #drawSectionLabels() {
    const ctx = this.#ctx;
    const half = (this.#map.pitch * this.#scale) / 2;
    ctx.fillStyle = this.#colours.label;
    ctx.font = `600 12px ${this.#colours.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    for (const section of this.#map.sections) {
      const x = this.#origin.x + ((section.minX + section.maxX) / 2) * this.#scale;
      const y = this.#origin.y + section.minY * this.#scale - half - 4;
      ctx.fillText(section.name, x, y);
    }
  }

  /** One seat inside its cell: a tier-coloured dot when free, a darker and
   *  larger dot when selected, a rounded square when it is the buyer's, a
   *  small grey dot when held by someone, a small dark square when sold.
   *  Shapes differ, not only colours. */
  #drawSeat(i, clearFirst) {
    const ctx = this.#ctx;
    const colours = this.#colours;
    const pitchPx = this.#map.pitch * this.#scale;
    const { x, y } = this.centreOf(i);
    if (clearFirst) ctx.clearRect(x - pitchPx / 2, y - pitchPx / 2, pitchPx, pitchPx);
    const r = pitchPx * 0.4;
    ctx.beginPath();
    switch (this.#lookOf(i)) {
      case 'mine':
        ctx.fillStyle = colours.mine;
        ctx.roundRect(x - r, y - r, 2 * r, 2 * r, r * 0.35);
        break;
      case 'selected':
        ctx.fillStyle = colours.selected;
        ctx.arc(x, y, r * 1.1, 0, 2 * Math.PI);
        break;
      case 'taken':
        ctx.fillStyle = colours.taken;
        ctx.arc(x, y, Math.max(1.5, r * 0.6), 0, 2 * Math.PI);
        break;
      case 'sold': {
        const half = Math.max(1.5, r * 0.6);
        ctx.fillStyle = colours.sold;
        ctx.rect(x - half, y - half, 2 * half, 2 * half);
        break;
      }
      default: {
        const tier = this.#map.tierIndex.get(this.#map.seats[i].tier) ?? 0;
        ctx.fillStyle = colours.tiers[tier % colours.tiers.length];
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
    }
    ctx.fill();
  }

  #drawOverlay() {
    const ctx = this.#octx;
    ctx.setTransform(this.#dpr, 0, 0, this.#dpr, 0, 0);
    ctx.clearRect(0, 0, this.#size.width, this.#size.height);
    const pitchPx = this.#map.pitch * this.#scale;
    const radius = Math.max(5, pitchPx * 0.7);
    // Flashing rings blink (unless the buyer asked for less motion); the
    // focus ring shows only while the keyboard is what moves it.
    const blinkOn = reducedMotion.matches || Math.floor(Date.now() / 300) % 2 === 0;
    const focusOn = this.focusVisible();
    for (const { i, kind } of this.#decorations()) {
      if ((kind === 'flash' && !blinkOn) || (kind === 'focus' && !focusOn)) continue;
      const { x, y } = this.centreOf(i);
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.lineWidth = kind === 'hover' ? 1.5 : 2.5;
      ctx.strokeStyle = this.#colours[kind];
      ctx.stroke();
    }
  }
}
