// SPDX-License-Identifier: GPL-2.0-or-later
// tabvm's viewer page (served by glue/viewer.py under its per-run token).
//
// The screen: noVNC's RFB client on the "vnc" WebSocket (relayed to QEMU's VNC
// server), scaled to the window and centred (letterboxing). The keyboard goes
// through noVNC too: QEMU gives VNC keys to the guest's PS/2 keyboard.
//
// Touch and mouse: the #touch layer above the canvas takes every Pointer Event
// and sends, on the "input" WebSocket, the guest screen pixel under each
// pointer: {"touch": [[id, x, y], ...], "w": W, "h": H} with every touch (or
// pen) pointer down now, and {"mouse": [x, y, buttons], "w": W, "h": H}. The
// glue turns them into the touchscreen's contacts and its mouse collection.
// A pointer that goes down on the letterbox bars is ignored; one that moves
// out of the picture is held at its edge.

import RFB from './novnc/core/rfb.js';

const base = location.pathname.replace(/[^/]*$/, '');
const wsURL = (name) => `ws://${location.host}${base}${name}`;

const screen = document.getElementById('screen');
const layer = document.getElementById('touch');
const status = document.getElementById('status');

const state = { connected: false, sent: 0, dropped: 0, reconnects: 0 };
window.tabvm = state;

function showStatus(text) {
    status.textContent = text;
    status.classList.toggle('hidden', !text);
}

// -- the screen --
function connectScreen() {
    const rfb = new RFB(screen, wsURL('vnc'), { shared: true });
    rfb.scaleViewport = true;       // fit the window, keep the aspect: letterbox
    rfb.resizeSession = false;      // the host's display event sizes the guest
    rfb.focusOnClick = false;
    rfb.background = '#000';
    rfb.addEventListener('connect', () => { state.connected = true; showStatus(''); });
    rfb.addEventListener('disconnect', () => {
        state.connected = false;
        showStatus('disconnected: reconnecting…');
        state.reconnects += 1;
        setTimeout(connectScreen, 1000);
    });
    state.rfb = rfb;
}
connectScreen();

function canvas() {
    return screen.querySelector('canvas');
}

// The guest pixel under a client point: [x, y, W, H], or null when the point is
// not on the picture (and ``clamp`` is false).
function guestPixel(clientX, clientY, clamp) {
    const c = canvas();
    if (!c || !c.width || !c.height) {
        return null;
    }
    const r = c.getBoundingClientRect();
    if (!r.width || !r.height) {
        return null;
    }
    const fx = (clientX - r.left) / r.width;
    const fy = (clientY - r.top) / r.height;
    if (!clamp && (fx < 0 || fx >= 1 || fy < 0 || fy >= 1)) {
        return null;
    }
    const W = c.width, H = c.height;
    const x = Math.min(W - 1, Math.max(0, Math.floor(fx * W)));
    const y = Math.min(H - 1, Math.max(0, Math.floor(fy * H)));
    return [x, y, W, H];
}
state.guestPixel = guestPixel;

// -- input --
let input = null;
function connectInput() {
    input = new WebSocket(wsURL('input'));
    input.addEventListener('close', () => setTimeout(connectInput, 1000));
}
connectInput();

function send(message) {
    if (input && input.readyState === WebSocket.OPEN) {
        input.send(JSON.stringify(message));
        state.sent += 1;
    } else {
        state.dropped += 1;
    }
}

const touches = new Map();      // pointerId -> [x, y, W, H]
let mouseButtons = 0;

function sendTouches() {
    let W = 0, H = 0;
    const list = [];
    for (const [id, p] of touches) {
        list.push([id, p[0], p[1]]);
        W = p[2];
        H = p[3];
    }
    if (!list.length) {
        const c = canvas();
        W = c ? c.width : 1;
        H = c ? c.height : 1;
    }
    send({ touch: list, w: W || 1, h: H || 1 });
}

function onPointer(ev) {
    ev.preventDefault();
    const kind = ev.type;
    if (ev.pointerType === 'mouse') {
        const down = kind === 'pointerdown';
        const p = guestPixel(ev.clientX, ev.clientY, !down && mouseButtons !== 0);
        if (down) {
            layer.setPointerCapture(ev.pointerId);
            if (state.rfb) {
                state.rfb.focus();        // keys go to the guest from now on
            }
        }
        if (p) {
            mouseButtons = ev.buttons;
            send({ mouse: [p[0], p[1], ev.buttons], w: p[2], h: p[3] });
        }
        return;
    }
    // touch and pen: contacts
    if (kind === 'pointerdown') {
        const p = guestPixel(ev.clientX, ev.clientY, false);
        if (!p) {
            return;                 // on the letterbox bars
        }
        layer.setPointerCapture(ev.pointerId);
        if (state.rfb) {
            state.rfb.focus();
        }
        touches.set(ev.pointerId, p);
    } else if (kind === 'pointermove') {
        if (!touches.has(ev.pointerId)) {
            return;
        }
        const p = guestPixel(ev.clientX, ev.clientY, true);
        const old = touches.get(ev.pointerId);
        if (!p || (p[0] === old[0] && p[1] === old[1])) {
            return;
        }
        touches.set(ev.pointerId, p);
    } else {
        if (!touches.delete(ev.pointerId)) {
            return;
        }
    }
    sendTouches();
}

for (const t of ['pointerdown', 'pointermove', 'pointerup', 'pointercancel']) {
    layer.addEventListener(t, onPointer);
}
layer.addEventListener('contextmenu', (ev) => ev.preventDefault());
window.addEventListener('blur', () => {
    if (touches.size) {
        touches.clear();
        sendTouches();
    }
});
