// llama_nll.mjs: run an exported GGUF (and optionally its LoRA adapter) in llama.cpp through
// node-llama-cpp and print one JSON line: the NLL per token over windows of a text, the token
// ids it scored (written to --ids-out so qrecon can score exactly the same tokens), tokens/s, and
// the greedy continuation of a prompt.
//
// usage: node llama_nll.mjs --pkg DIR --model model.gguf [--lora lora.gguf] --text FILE
//            [--windows 16] [--seq-len 256] [--ids-out FILE] [--prompt TEXT] [--steps 24]
//            [--threads 1] [--bench 1]
//
// Windows are those of `qrecon eval`: the text is tokenized once (llama.cpp adds the SentencePiece
// dummy prefix as qrecon does), window w is BOS + tokens w*(L-1) .. (w+1)*(L-1)-1. llama.cpp runs
// with an F32 KV cache and flash attention off (its defaults, F16 KV and flash attention, move the
// NLL by about 4e-5); raw logits come from controlledEvaluate and the log-softmax is done here in
// double precision, as qrecon does.
import {pathToFileURL} from "node:url";
import {writeFileSync, readFileSync} from "node:fs";
import path from "node:path";

const args = {windows: 16, "seq-len": 256, steps: 24, threads: 1};
for (let i = 2; i < process.argv.length; i += 2) {
    args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const W = Number(args.windows), L = Number(args["seq-len"]);
const {getLlama, LlamaLogLevel} = await import(
    pathToFileURL(path.join(args.pkg, "node_modules/node-llama-cpp/dist/index.js")).href);

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error,
                              progressLogs: false});
const model = await llama.loadModel({modelPath: args.model});
const ctxOpts = {contextSize: L, batchSize: L, sequences: 1, flashAttention: false,
                 threads: Number(args.threads), experimentalKvCacheKeyType: "F32",
                 experimentalKvCacheValueType: "F32"};
if (args.lora) {
    ctxOpts.lora = {adapters: [{filePath: args.lora, scale: 1}]};
}
const context = await model.createContext(ctxOpts);
const seq = context.getSequence();
const BOS = 1;

function logSoftmaxAt(logits, vocab, target) {
    // logits: Map<token, logit>; log p(target) in double
    const v = new Float64Array(vocab).fill(-Infinity);
    for (const [t, x] of logits) v[t] = x;
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) if (v[i] > m) m = v[i];
    let s = 0;
    for (let i = 0; i < vocab; i++) s += Math.exp(v[i] - m);
    return v[target] - m - Math.log(s);
}

function argmax(logits) {
    let best = -1, bv = -Infinity;
    for (const [t, x] of logits) {
        if (x > bv || (x === bv && t < best)) {
            bv = x;
            best = t;
        }
    }
    return best;
}

const nVocab = Number(model.fileInfo.metadata.llama?.vocab_size ??
                      model.fileInfo.metadata.tokenizer.ggml.tokens.length);
const text = readFileSync(args.text, "utf8");
const ids = model.tokenize(text, false).slice(0, W * (L - 1));
if (ids.length < W * (L - 1)) {
    console.error(`text too short: ${ids.length} tokens`);
    process.exit(2);
}
if (args["ids-out"]) {
    writeFileSync(args["ids-out"], ids.join("\n") + "\n");
}

let sum = 0, scored = 0;
const t0 = performance.now();
for (let w = 0; w < W; w++) {
    const win = [BOS, ...ids.slice(w * (L - 1), (w + 1) * (L - 1))];
    await seq.clearHistory();
    const input = win.map((t, i) => i + 1 < win.length ? [t, {generateNext: {logits: true}}] : t);
    const out = await seq.controlledEvaluate(input);
    for (let i = 0; i + 1 < win.length; i++) {
        sum -= logSoftmaxAt(out[i].next.logits, nVocab, win[i + 1]);
        scored++;
    }
}
const seconds = (performance.now() - t0) / 1000;

// throughput of the forward pass alone: the same windows without asking for logits
let benchSeconds = 0;
if (args.bench) {
    const t1 = performance.now();
    for (let w = 0; w < W; w++) {
        await seq.clearHistory();
        await seq.evaluateWithoutGeneratingNewTokens(
            [BOS, ...ids.slice(w * (L - 1), (w + 1) * (L - 1))]);
    }
    benchSeconds = (performance.now() - t1) / 1000;
}

// greedy continuation of the prompt (BOS + prompt), argmax of the raw logits at every step
let generated = [];
if (args.prompt) {
    await seq.clearHistory();
    const prompt = [BOS, ...model.tokenize(args.prompt, false)];
    let out = await seq.controlledEvaluate(
        prompt.map((t, i) => i + 1 < prompt.length ? t : [t, {generateNext: {logits: true}}]));
    let next = argmax(out[prompt.length - 1].next.logits);
    for (let s = 0; s < Number(args.steps) && next !== BOS && next !== 2; s++) {
        generated.push(next);
        if (s + 1 === Number(args.steps)) break;
        out = await seq.controlledEvaluate([[next, {generateNext: {logits: true}}]]);
        next = argmax(out[0].next.logits);
    }
}
console.log(JSON.stringify({nll_per_token: sum / scored, tokens_scored: scored, windows: W,
                            seq_len: L, seconds, tokens_per_s: scored / seconds,
                            forward_tokens_per_s: benchSeconds ? scored / benchSeconds : null,
                            generated_ids: generated,
                            generated_text: model.detokenize(generated)}));
await context.dispose();
await model.dispose();
await llama.dispose();
