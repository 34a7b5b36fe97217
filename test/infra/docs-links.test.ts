/**
 * The documentation holds together: every relative link in README.md, docs/ and the READMEs
 * under local/ and events/ points at a file or folder that exists in the repository, and every
 * `#anchor` matches a heading of the file it points into (GitHub's slugs). README.md stays a
 * landing page (at most 15,360 bytes), and the dependency table in docs/development.md names
 * exactly the packages in package.json. No network: external links are not followed.
 *
 * The checker is a pure function over a small file-system view, so the unit cases below run it
 * on in-memory documents and show that each kind of broken link is reported.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const README_MAX_BYTES = 15_360;

// ---------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------

/** What the checker needs to know about the repository; paths are repository-relative, with `/`. */
interface DocFiles {
  exists(path: string): boolean;
  /** The text of a markdown file, or undefined when there is none. */
  readMarkdown(path: string): string | undefined;
}

interface FoundLink {
  readonly target: string;
  readonly line: number;
}

interface ExtractedLinks {
  /** Inline links and images `[text](target)`, and reference definitions `[label]: target`. */
  readonly links: readonly FoundLink[];
  /** Labels used as `[text][label]` or `[label][]` that have no definition. */
  readonly undefinedReferences: readonly FoundLink[];
}

/** Replaces every character but newlines with spaces, so offsets and line numbers stay put. */
function blank(text: string): string {
  return text.replace(/[^\n]/g, ' ');
}

/** The markdown without fenced code blocks and HTML comments (blanked, not removed). */
function withoutFencedCode(markdown: string): string {
  let fence: { char: string; length: number } | undefined;
  const kept = markdown.split('\n').map((line) => {
    if (fence === undefined) {
      const opening = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
      if (opening === undefined) return line;
      fence = { char: opening.charAt(0), length: opening.length };
      return blank(line);
    }
    const closing = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line)?.[1];
    if (closing !== undefined && closing.charAt(0) === fence.char && closing.length >= fence.length) fence = undefined;
    return blank(line);
  });
  return kept.join('\n').replace(/<!--[\s\S]*?-->/g, blank);
}

/** The markdown without any code (fenced blocks, inline code spans) or HTML comments. */
function withoutCode(markdown: string): string {
  return withoutFencedCode(markdown).replace(/(`+)(?!`)[\s\S]*?[^`]\1(?!`)/g, blank);
}

function lineAt(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

/** Normalises a reference label the way CommonMark matches them. */
function normaliseLabel(label: string): string {
  return label.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** A link destination without its angle brackets. */
function destination(raw: string): string {
  return raw.startsWith('<') && raw.endsWith('>') ? raw.slice(1, -1) : raw;
}

const LINK_TEXT = String.raw`(?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*`;
/** `[text](destination "title")`: the destination may hold balanced parentheses, or be `<...>`. */
const LINK_DESTINATION = String.raw`(<[^>\n]*>|(?:[^\s()]|\([^\s()]*\))*)`;
const LINK_TITLE = String.raw`(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?`;
const INLINE_LINK = new RegExp(String.raw`!?\[${LINK_TEXT}\]\(\s*${LINK_DESTINATION}${LINK_TITLE}\s*\)`, 'g');
const REFERENCE_DEFINITION = /^ {0,3}\[([^\]\n]+)\]:[ \t]*(<[^>\n]*>|\S+)/gm;
const REFERENCE_USE = new RegExp(String.raw`\[(${LINK_TEXT})\]\[([^\]\n]*)\]`, 'g');

/** Every link of a markdown document (code excluded), and the reference labels it uses without defining. */
function extractLinks(markdown: string): ExtractedLinks {
  const text = withoutCode(markdown);
  const links: FoundLink[] = [];
  for (const match of text.matchAll(INLINE_LINK)) {
    links.push({ target: destination(match[1] ?? ''), line: lineAt(text, match.index) });
  }
  const defined = new Set<string>();
  for (const match of text.matchAll(REFERENCE_DEFINITION)) {
    defined.add(normaliseLabel(match[1] ?? ''));
    links.push({ target: destination(match[2] ?? ''), line: lineAt(text, match.index) });
  }
  const undefinedReferences: FoundLink[] = [];
  for (const match of text.matchAll(REFERENCE_USE)) {
    const label = match[2] === undefined || match[2] === '' ? (match[1] ?? '') : match[2];
    if (!defined.has(normaliseLabel(label))) undefinedReferences.push({ target: `[${label}]`, line: lineAt(text, match.index) });
  }
  return { links, undefinedReferences };
}

/** GitHub's anchor for a heading text: lowercase, punctuation dropped (but `-` and `_`), each space a `-`. */
function slugOf(headingText: string): string {
  const rendered = headingText
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]*>/g, '')
    .trim();
  return rendered
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a markdown document offers: one per heading (duplicates numbered as GitHub does), and HTML ids. */
function anchorsOf(markdown: string): Set<string> {
  const lines = withoutFencedCode(markdown).split('\n');
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const add = (text: string): void => {
    const slug = slugOf(text);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  };
  lines.forEach((line, index) => {
    const atx = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (atx !== null) {
      add(atx[1] ?? '');
      return;
    }
    const previous = index > 0 ? (lines[index - 1] ?? '') : '';
    if (/^ {0,3}(?:=+|-+)[ \t]*$/.test(line) && previous.trim() !== '' && !/^ {0,3}(?:[#>|*+-]|\d+[.)])/.test(previous)) add(previous);
  });
  for (const match of markdown.matchAll(/<a\s[^>]*\b(?:id|name)=["']([^"']+)["']/gi)) anchors.add(match[1] ?? '');
  return anchors;
}

/** `decodeURIComponent`, or the text as it is when it is not valid percent-encoding. */
function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Problems with the relative links of one document, as `path:line: target: what is wrong`. */
function checkDocument(path: string, markdown: string, files: DocFiles): string[] {
  const problems: string[] = [];
  const report = (link: FoundLink, what: string): void => {
    problems.push(`${path}:${link.line}: ${link.target}: ${what}`);
  };
  const { links, undefinedReferences } = extractLinks(markdown);
  for (const link of undefinedReferences) report(link, 'reference label has no definition');
  for (const link of links) {
    const { target } = link;
    if (/^(?:https?|mailto):/i.test(target)) continue;
    if (target === '') {
      report(link, 'empty link target');
      continue;
    }
    if (/^[a-z][a-z\d+.-]*:/i.test(target)) {
      report(link, 'not a relative link, nor http(s) or mailto');
      continue;
    }
    const hash = target.indexOf('#');
    const filePart = (hash < 0 ? target : target.slice(0, hash)).replace(/\?.*$/, '');
    const anchor = hash < 0 ? undefined : decoded(target.slice(hash + 1));
    let resolved = path;
    if (filePart !== '') {
      const file = decoded(filePart);
      resolved = posix.normalize(file.startsWith('/') ? file.slice(1) : posix.join(posix.dirname(path), file)).replace(/\/$/, '');
      if (resolved === '..' || resolved.startsWith('../')) {
        report(link, 'points outside the repository');
        continue;
      }
      if (!files.exists(resolved)) {
        report(link, `${resolved} does not exist`);
        continue;
      }
    }
    if (anchor === undefined || !resolved.toLowerCase().endsWith('.md')) continue;
    const content = resolved === path ? markdown : files.readMarkdown(resolved);
    if (content === undefined || !anchorsOf(content).has(anchor)) report(link, `no heading with the anchor #${anchor} in ${resolved}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------
// The repository's documents
// ---------------------------------------------------------------------------------------

const REPOSITORY: DocFiles = {
  exists: (path) => existsSync(join(ROOT, path)),
  readMarkdown: (path) => {
    const file = join(ROOT, path);
    return path.toLowerCase().endsWith('.md') && existsSync(file) && statSync(file).isFile() ? readFileSync(file, 'utf8') : undefined;
  },
};

/** Repository-relative paths of the files under `folder` (recursively, no node_modules) that `keep` accepts. */
function filesUnder(folder: string, keep: (name: string) => boolean): string[] {
  if (!existsSync(join(ROOT, folder))) return [];
  const found: string[] = [];
  for (const entry of readdirSync(join(ROOT, folder), { withFileTypes: true })) {
    const path = posix.join(folder, entry.name);
    if (entry.isDirectory() && entry.name !== 'node_modules') found.push(...filesUnder(path, keep));
    else if (entry.isFile() && keep(entry.name)) found.push(path);
  }
  return found;
}

const DOCUMENTS = [
  'README.md',
  ...filesUnder('docs', (name) => name.endsWith('.md')),
  ...filesUnder('local', (name) => name === 'README.md'),
  ...filesUnder('events', (name) => name === 'README.md'),
].sort();

function read(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

describe('documentation links', () => {
  it('finds the documents to check', () => {
    expect(DOCUMENTS).toEqual(
      expect.arrayContaining(['README.md', 'docs/architecture.md', 'docs/waterflai-contract.md', 'local/runtime/README.md']),
    );
  });

  it.each(DOCUMENTS)('every relative link in %s resolves', (path) => {
    expect(checkDocument(path, read(path), REPOSITORY)).toEqual([]);
  });

  it('checks a real number of links (the extractor is not blind)', () => {
    const links = DOCUMENTS.flatMap((path) => extractLinks(read(path)).links);
    const relative = links.filter((link) => !/^(?:https?|mailto):/i.test(link.target));
    expect(relative.length).toBeGreaterThan(60);
    expect(relative.filter((link) => link.target.includes('#')).length).toBeGreaterThan(20);
  });
});

describe('README.md', () => {
  it(`is at most ${README_MAX_BYTES} bytes`, () => {
    expect(statSync(join(ROOT, 'README.md')).size).toBeLessThanOrEqual(README_MAX_BYTES);
  });

  it('shows the two commands', () => {
    const readme = read('README.md');
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });
});

describe('docs/development.md', () => {
  it('explains exactly the packages of package.json', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
    const installed = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }).sort();
    const doc = read('docs/development.md');
    const start = doc.indexOf('## Why each dependency is there');
    expect(start).toBeGreaterThanOrEqual(0);
    const section = doc.slice(start).split(/\n## /)[0] ?? '';
    const explained = section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([^`]+)`/g)].map((match) => match[1] ?? ''))
      .sort();
    expect(explained).toEqual(installed);
  });
});

describe('the link checker', () => {
  /** An in-memory repository: the files that exist, and the markdown ones' text. */
  function memory(documents: Record<string, string>, otherFiles: readonly string[] = []): DocFiles {
    const paths = new Set([...Object.keys(documents), ...otherFiles]);
    const foldersOf = (path: string): string[] =>
      path
        .split('/')
        .slice(0, -1)
        .map((_, index, parts) => parts.slice(0, index + 1).join('/'));
    const folders = new Set([...paths].flatMap(foldersOf));
    return { exists: (path) => paths.has(path) || folders.has(path), readMarkdown: (path) => documents[path] };
  }

  const GUIDE = ['# Guide', '## Results before `cleanup_after`', '## Nothing leaves 127.0.0.1', '## Setup', '## Setup'].join('\n\n');

  it('accepts links that resolve: files, folders, anchors here and there, external links', () => {
    const doc = [
      '# Home',
      'See [the guide](docs/guide.md), [a section](docs/guide.md#results-before-cleanup_after),',
      '[loopback](docs/guide.md#nothing-leaves-127001), [the second setup](docs/guide.md#setup-1),',
      '[schemas](events/schemas/), [samples](events/samples), [top](#home), [site](https://example.com/x#y),',
      '[mail](mailto:someone@example.com) and [a reference][ref].',
      '',
      '[ref]: docs/guide.md#setup',
    ].join('\n');
    const files = memory({ 'README.md': doc, 'docs/guide.md': GUIDE }, ['events/schemas/job.schema.json', 'events/samples/a.json']);
    expect(checkDocument('README.md', doc, files)).toEqual([]);
  });

  it('reports a link to a file that does not exist', () => {
    const doc = '# Home\n\nSee [the guide](docs/gide.md).\n';
    const files = memory({ 'README.md': doc, 'docs/guide.md': GUIDE });
    expect(checkDocument('README.md', doc, files)).toEqual(['README.md:3: docs/gide.md: docs/gide.md does not exist']);
  });

  it('reports an anchor that matches no heading, in another file and in the same file', () => {
    const doc = '# Home\n\n[a](docs/guide.md#results-before-cleanup-after) and [b](#homepage)\n';
    const files = memory({ 'README.md': doc, 'docs/guide.md': GUIDE });
    expect(checkDocument('README.md', doc, files)).toEqual([
      'README.md:3: docs/guide.md#results-before-cleanup-after: no heading with the anchor #results-before-cleanup-after in docs/guide.md',
      'README.md:3: #homepage: no heading with the anchor #homepage in README.md',
    ]);
  });

  it('resolves links relative to the document and refuses links out of the repository', () => {
    const doc = '# Guide\n\n[home](../README.md#home), [up too far](../../outside.md), [missing](./other.md)\n';
    const files = memory({ 'README.md': '# Home\n', 'docs/guide.md': doc });
    expect(checkDocument('docs/guide.md', doc, files)).toEqual([
      'docs/guide.md:3: ../../outside.md: points outside the repository',
      'docs/guide.md:3: ./other.md: docs/other.md does not exist',
    ]);
  });

  it('checks reference-style links: broken definitions and undefined labels', () => {
    const doc = ['# Home', '', 'Read [the guide][guide] and [the spec][spec].', '', '[guide]: docs/missing.md'].join('\n');
    const files = memory({ 'README.md': doc });
    expect(checkDocument('README.md', doc, files)).toEqual([
      'README.md:3: [spec]: reference label has no definition',
      'README.md:5: docs/missing.md: docs/missing.md does not exist',
    ]);
  });

  it('ignores links inside code blocks and code spans, and reports other schemes', () => {
    const doc = ['# Home', '', '```md', '[not a link](missing.md)', '```', '', '`[nor this](missing.md)`, [this](htps://typo)'].join('\n');
    const files = memory({ 'README.md': doc });
    expect(checkDocument('README.md', doc, files)).toEqual(['README.md:7: htps://typo: not a relative link, nor http(s) or mailto']);
  });

  it.each([
    ['Results before `cleanup_after`', 'results-before-cleanup_after'],
    ['Nothing leaves 127.0.0.1', 'nothing-leaves-127001'],
    ['Executions stopped from outside: the reconciler', 'executions-stopped-from-outside-the-reconciler'],
    ['The last full run (before the incidents were added)', 'the-last-full-run-before-the-incidents-were-added'],
    ['cdk.json context', 'cdkjson-context'],
    ['See [the guide](docs/guide.md) now', 'see-the-guide-now'],
  ])('slugs the heading "%s" as GitHub does (%s)', (heading, slug) => {
    expect(slugOf(heading)).toBe(slug);
  });
});
