// The comparison peer: the same webhook contract as cashpayd, written the
// way a Node.js shop would write it with Express and better-sqlite3.
//
//   node server.js PORT DB_PATH SECRET_FILE MIGRATIONS_DIR
//
// Per request: HMAC-SHA256 (hex, X-CashPay-Signature) over the raw body,
// compared in constant time; strict payload validation; then, in one
// transaction of a WAL database with synchronous = FULL, the delivery row,
// the order insert or update and the order event (cashpayd's own schema, so
// the benchmark counts both the same way); 200 only after COMMIT returned.
// Rejected deliveries are recorded too, as cashpayd does.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const express = require('express');
const Database = require('better-sqlite3');

const [port, dbPath, secretFile, migrations] = process.argv.slice(2);
const secrets = fs.readFileSync(secretFile, 'utf8').split('\n').filter((s) => s.length > 0)
        .map((s) => Buffer.from(s));

const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('foreign_keys = ON');
db.pragma('busy_timeout = 5000');
if (db.pragma('user_version', { simple: true }) === 0) {
        const files = fs.readdirSync(migrations).filter((f) => /^[0-9]{4}_.*\.sql$/.test(f)).sort();
        db.exec('BEGIN');
        for (const f of files)
                db.exec(fs.readFileSync(`${migrations}/${f}`, 'utf8'));
        db.exec(`PRAGMA user_version = ${files.length}`);
        db.exec('COMMIT');
}

const q = {
        order: db.prepare('SELECT status, amount, currency FROM orders WHERE charge_id = ?'),
        insertOrder: db.prepare(`INSERT INTO orders (charge_id, status, amount, currency,
                description, transaction_url, charge_created, first_seen_at, updated_at,
                captured_at, failed_at)
                VALUES (@id, @status, @amount, @currency, @description, @transaction_url,
                @created, @now, @now, CASE @status WHEN 'CAPTURED' THEN @now END,
                CASE @status WHEN 'FAILED' THEN @now END)`),
        updateOrder: db.prepare(`UPDATE orders SET status = @status, updated_at = @now,
                captured_at = CASE @status WHEN 'CAPTURED' THEN coalesce(captured_at, @now) ELSE captured_at END,
                failed_at = CASE @status WHEN 'FAILED' THEN coalesce(failed_at, @now) ELSE failed_at END
                WHERE charge_id = @id`),
        flagReview: db.prepare('UPDATE orders SET needs_review = 1, updated_at = ? WHERE charge_id = ?'),
        insertDelivery: db.prepare(`INSERT INTO webhook_deliveries (received_at, remote_addr,
                charge_id, claimed_status, outcome, http_status, error, body)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
        insertEvent: db.prepare(`INSERT INTO order_events (charge_id, from_status, to_status,
                delivery_id, recorded_at) VALUES (?, ?, ?, ?, ?)`),
};

function signatureOk(header, body) {
        if (typeof header !== 'string')
                return false;
        const hex = header.toLowerCase().replace(/^sha256=/, '');
        if (!/^[0-9a-f]{64}$/.test(hex))
                return false;
        const given = Buffer.from(hex, 'hex');
        return secrets.some((key) => crypto.timingSafeEqual(
                crypto.createHmac('sha256', key).update(body).digest(), given));
}

const isInt = (v) => Number.isSafeInteger(v);

function validate(c) {
        if (c === null || typeof c !== 'object' || Array.isArray(c))
                return 'body must be a JSON object';
        if (typeof c.id !== 'string' || !/^chg_[A-Za-z0-9_-]{1,128}$/.test(c.id))
                return 'id must be chg_ followed by 1-128 of [A-Za-z0-9_-]';
        if (!['INITIATED', 'CAPTURED', 'FAILED'].includes(c.status))
                return 'status must be INITIATED, CAPTURED or FAILED';
        if (!isInt(c.amount) || c.amount < 0)
                return 'amount must be an integer';
        if (typeof c.currency !== 'string' || !/^[A-Z]{3}$/.test(c.currency))
                return 'currency must be three capital letters';
        if (!isInt(c.created) || c.created < 0)
                return 'created must be an integer';
        for (const k of ['description', 'transaction_url'])
                if (c[k] !== undefined && (typeof c[k] !== 'string' || c[k].length > 4096))
                        return `${k} must be a string`;
        return null;
}

// cashpayd's state machine: amount/currency first, then the status.
function decide(cur, c) {
        if (!cur)
                return { outcome: 'applied', insert: true };
        if (cur.amount !== c.amount || cur.currency !== c.currency)
                return { outcome: 'conflict', review: true };
        if (cur.status === c.status)
                return { outcome: 'duplicate' };
        if (c.status === 'INITIATED')
                return { outcome: 'stale' };
        if (cur.status === 'CAPTURED' && c.status === 'FAILED')
                return { outcome: 'conflict', review: true };
        return { outcome: 'applied', update: true };
}

const record = db.transaction((c, body, addr, now) => {
        const cur = q.order.get(c.id);
        const d = decide(cur, c);
        const row = { ...c, description: c.description ?? null,
                      transaction_url: c.transaction_url ?? null, now };
        if (d.insert)
                q.insertOrder.run(row);
        else if (d.update)
                q.updateOrder.run(row);
        else if (d.review)
                q.flagReview.run(now, c.id);
        const id = q.insertDelivery.run(now, addr, c.id, c.status, d.outcome, 200, null, body)
                .lastInsertRowid;
        if (d.insert || d.update)
                q.insertEvent.run(c.id, cur ? cur.status : null, c.status, id, now);
        return d.outcome;
});

function reject(res, body, addr, outcome, status, error, answer) {
        q.insertDelivery.run(new Date().toISOString(), addr, null, null, outcome, status, error,
                             body.subarray(0, 4096));
        res.status(status).json(answer);
}

const app = express();
app.disable('x-powered-by');
app.post('/cashpay/webhook', express.raw({ type: 'application/json', limit: '64kb' }),
         (req, res) => {
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const addr = req.socket.remoteAddress || 'unknown';
        if (!signatureOk(req.get('X-CashPay-Signature'), body))
                return reject(res, body, addr, 'unauthorized', 401, 'signature mismatch',
                              { error: 'unauthorized' });
        let c;
        try {
                c = JSON.parse(body.toString('utf8'));
        } catch (e) {
                return reject(res, body, addr, 'invalid', 400, 'bad JSON',
                              { error: 'invalid_payload', detail: 'bad JSON' });
        }
        const problem = validate(c);
        if (problem)
                return reject(res, body, addr, 'invalid', 400, problem,
                              { error: 'invalid_payload', detail: problem });
        try {
                res.json({ outcome: record(c, body, addr, new Date().toISOString()) });
        } catch (e) {
                res.status(503).set('Retry-After', '5').json({ error: 'unavailable' });
        }
});

const server = app.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => {
        db.close();
        process.exit(0);
}));
// Keep-alive connections would hold close() open: end them.
process.on('SIGTERM', () => server.closeAllConnections && server.closeAllConnections());
