/**
 * The layer rules of `.dependency-cruiser.cjs` (run by `npm run lint`): they hold for the
 * code as it is, and they do report the imports they forbid (shown on a throw-away tree).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IForbiddenRuleType } from 'dependency-cruiser';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const config = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as { forbidden: IForbiddenRuleType[] };

async function violations(baseDir: string, paths: string[]): Promise<string[]> {
  const result = await cruise(paths, {
    baseDir,
    ruleSet: { forbidden: config.forbidden },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    validate: true,
  });
  const output = result.output as ICruiseResult;
  return output.summary.violations.map((violation) => `${violation.rule.name}: ${violation.from} -> ${violation.to}`).sort();
}

const scratch = mkdtempSync(join(tmpdir(), 'import-rules-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function file(path: string, text: string): void {
  mkdirSync(dirname(join(scratch, path)), { recursive: true });
  writeFileSync(join(scratch, path), text);
}

describe('module layer rules', () => {
  it('hold for the product code', async () => {
    expect(await violations(ROOT, ['lambdas', 'lib', 'bin', 'events'])).toEqual([]);
  }, 60_000);

  it('report each forbidden direction', async () => {
    file('lambdas/contract/names.ts', "import { store } from '../aws/store';\nexport const NAME = store;\n");
    file(
      'lambdas/domain/rules.ts',
      "import { store } from '../aws/store';\nimport { NAME } from '../contract/names';\nexport const RULE = [store, NAME];\n",
    );
    file('lambdas/aws/store.ts', "import { client } from '../waterflai/client';\nexport const store = client;\n");
    file('lambdas/waterflai/client.ts', 'export const client = 1;\n');
    file('lambdas/poll/handler.ts', "import { START } from '../start-execution/handler';\nexport const POLL = START;\n");
    file('lambdas/start-execution/handler.ts', 'export const START = 1;\n');
    file(
      'lib/construct.ts',
      "import { POLL } from '../lambdas/poll/handler';\nimport { fake } from '../local/runtime';\nexport const C = [POLL, fake];\n",
    );
    file('local/runtime.ts', 'export const fake = 1;\n');

    expect(await violations(scratch, ['lambdas', 'lib'])).toEqual([
      'aws-not-waterflai: lambdas/aws/store.ts -> lambdas/waterflai/client.ts',
      'construct-needs-only-the-contract: lib/construct.ts -> lambdas/poll/handler.ts',
      'construct-needs-only-the-contract: lib/construct.ts -> local/runtime.ts',
      'contract-is-innermost: lambdas/contract/names.ts -> lambdas/aws/store.ts',
      'domain-imports-inward-only: lambdas/domain/rules.ts -> lambdas/aws/store.ts',
      'functions-are-independent: lambdas/poll/handler.ts -> lambdas/start-execution/handler.ts',
      'product-knows-no-local-runtime: lib/construct.ts -> local/runtime.ts',
    ]);
  }, 60_000);
});
