// The reference JavaScript implementation of Standard Webhooks (the npm
// package "standardwebhooks"), driven from the command line so the tests
// can check cashpayd and cashpayctl against it.
//
//   node standardwebhooks.js MODULES_DIR verify SECRET < {"headers": {...}, "body": "..."}
//     prints {"ok": true} or {"ok": false, "error": "..."}; exit 0 either way
//   node standardwebhooks.js MODULES_DIR sign SECRET MSG_ID UNIX_SECONDS < BODY
//     prints {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...}
//
// MODULES_DIR is the --prefix the package was installed into with npm.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

function usage() {
        process.stderr.write("usage: standardwebhooks.js MODULES_DIR verify SECRET | "
                             + "sign SECRET MSG_ID UNIX_SECONDS\n");
        process.exit(2);
}

function verify(Webhook, secret, input) {
        const request = JSON.parse(input.toString("utf8"));
        try {
                new Webhook(secret).verify(request.body, request.headers);
                return { ok: true };
        } catch (e) {
                return { ok: false, error: String(e.message || e) };
        }
}

function sign(Webhook, secret, msgId, seconds, body) {
        const when = new Date(Number(seconds) * 1000);
        return {
                "webhook-id": msgId,
                "webhook-timestamp": String(seconds),
                "webhook-signature": new Webhook(secret).sign(msgId, when, body),
        };
}

function main(argv) {
        if (argv.length < 3)
                usage();
        const load = createRequire(path.join(path.resolve(argv[0]), "package.json"));
        const { Webhook } = load("standardwebhooks");
        const input = fs.readFileSync(0);
        let result;
        if (argv[1] === "verify" && argv.length === 3)
                result = verify(Webhook, argv[2], input);
        else if (argv[1] === "sign" && argv.length === 5)
                result = sign(Webhook, argv[2], argv[3], argv[4], input);
        else
                usage();
        process.stdout.write(JSON.stringify(result) + "\n");
}

main(process.argv.slice(2));
