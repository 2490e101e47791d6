// make_fixtures.mjs NPM_DIR OUT_DIR: build real tokenizer.json folders from the vocabularies that the
// npm packages llama-tokenizer-js (Llama-2: 32,000 pieces, 61,249 merges) and llama3-tokenizer-js
// (Llama-3: 128,000 byte-level pieces, 280,147 merges, 256 special tokens) ship, in the layout of
// the Hugging Face files of those models:
//   OUT_DIR/llama2: normalizer Prepend "▁" + Replace " " -> "▁", BPE with byte_fallback
//   OUT_DIR/llama3: Split (Llama-3 pattern, Isolated) + ByteLevel, BPE with ignore_merges
//   OUT_DIR/qwen2:  Qwen2's pipeline (NFC, Qwen2 pattern: single digits) over Llama-3's vocabulary
//                   with Qwen2's three special tokens (no npm package ships Qwen2's vocabulary)
// each with tokenizer_config.json (BOS / EOS as the real models have them). Nothing here is
// committed: the files are written under the build tree.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [npmDir, outDir] = process.argv.slice(2);
const mod = (name, file) => import(pathToFileURL(path.join(npmDir, 'node_modules', name, file)).href);

// Merges in rank order as [left, right] pairs. The packages key them "left right" in a Map whose
// value is the rank; pieces may not contain a space for this to be unambiguous, which is checked.
function mergePairs(tok, vocabSet) {
  const entries = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]);
  return entries.map(([key]) => {
    const cut = [];
    for (let i = key.indexOf(' '); i >= 0; i = key.indexOf(' ', i + 1)) {
      if (vocabSet.has(key.slice(0, i)) && vocabSet.has(key.slice(i + 1))) cut.push(i);
    }
    if (cut.length !== 1) throw new Error(`ambiguous merge ${JSON.stringify(key)}`);
    return [key.slice(0, cut[0]), key.slice(cut[0] + 1)];
  });
}

function vocabObject(pieces) {
  const vocab = {};
  pieces.forEach((p, id) => {
    if (Object.prototype.hasOwnProperty.call(vocab, p)) throw new Error(`duplicate piece ${p}`);
    vocab[p] = id;
  });
  return vocab;
}

const added = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false,
                                  normalized: false, special: true });
const template = (bos) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
         { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: {},
});

function write(dir, tokenizer, config) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 1));
}

// ---- Llama-2 ----
{
  const { LlamaTokenizer } = await mod('llama-tokenizer-js', 'llama-tokenizer.js');
  const t = new LlamaTokenizer();
  const pieces = t.vocabById.slice(0, 32000);
  const merges = mergePairs(t, new Set(pieces));
  write(path.join(outDir, 'llama2'), {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '\u2581' },
      { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: template('<s>'),
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' },
      { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
             vocab: vocabObject(pieces), merges },
  }, { add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>',
       unk_token: '<unk>', tokenizer_class: 'LlamaTokenizerFast' });
}

// ---- Llama-3 and the Qwen2-style pipeline over its vocabulary ----
{
  const { Llama3Tokenizer } = await mod('llama3-tokenizer-js', 'bundle/llama3-tokenizer-with-baked-data.js');
  const t = new Llama3Tokenizer();
  const pieces = t.vocabById.slice(0, 128000);
  const specials = t.vocabById.slice(128000);
  const vocab = vocabObject(pieces);
  const merges = mergePairs(t, new Set(pieces));
  const split = (regex) => ({ type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] });
  const model = (ignore) => ({ type: 'BPE', dropout: null, unk_token: null,
    continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
    byte_fallback: false, ignore_merges: ignore, vocab, merges });
  const decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const qwen2Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  write(path.join(outDir, 'llama3'), {
    version: '1.0', truncation: null, padding: null,
    added_tokens: specials.map((s, i) => added(128000 + i, s)),
    normalizer: null, pre_tokenizer: split(llama3Regex), post_processor: template('<|begin_of_text|>'),
    decoder, model: model(true),
  }, { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>',
       tokenizer_class: 'PreTrainedTokenizerFast' });
  write(path.join(outDir, 'qwen2'), {
    version: '1.0', truncation: null, padding: null,
    added_tokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'].map((s, i) => added(128000 + i, s)),
    normalizer: { type: 'NFC' }, pre_tokenizer: split(qwen2Regex),
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder, model: model(false),
  }, { add_prefix_space: false, bos_token: null, eos_token: '<|endoftext|>',
       tokenizer_class: 'Qwen2TokenizerFast' });
}
