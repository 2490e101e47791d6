// encode.mjs NPM_DIR TOKENIZER_DIR TEXT_FILE lines|whole: the token ids of every line of the file
// (without its "\n"; a final empty line is dropped), or of the whole file, from
// @huggingface/tokenizers with add_special_tokens false, one line of space-separated ids each.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [npmDir, tokDir, textFile, mode] = process.argv.slice(2);
const { Tokenizer } = await import(pathToFileURL(
  path.join(npmDir, 'node_modules/@huggingface/tokenizers/dist/tokenizers.mjs')).href);
const json = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8'));
const config = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8'));
const tok = new Tokenizer(json, config);
const text = fs.readFileSync(textFile, 'utf8');
let items = [text];
if (mode === 'lines') {
  items = text.split('\n');
  if (items.length > 0 && items[items.length - 1] === '') items.pop();
}
const out = items.map((s) => tok.encode(s, { add_special_tokens: false }).ids.join(' '));
fs.writeSync(1, out.join('\n') + '\n');
