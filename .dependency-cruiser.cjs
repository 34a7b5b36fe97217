/**
 * The layers of the product and the direction imports may take (checked by `npm run lint`,
 * which `npm test` runs). Inner layers know nothing of outer ones:
 *
 *   contract  <-  domain  <-  waterflai, aws  <-  platform  <-  lifecycle  <-  functions
 *
 * - lambdas/contract/  names, schemas, record and event shapes, settings: shared by lib/,
 *   the functions, local/ and subscribers. Imports nothing else of ours.
 * - lambdas/domain/    statuses and mapping, the loop state, the poll strategy, cancel and
 *   backoff rules. No AWS SDK, no HTTP.
 * - lambdas/waterflai/ the Waterflai client and its event stream.
 * - lambdas/aws/       job store, output store, outcome publisher, successor start, SDK clients.
 * - lambdas/platform/  logger, environment reading, and the wiring of clients from it.
 * - lambdas/lifecycle/ announce and settle: rules that use the adapters.
 * - lambdas/<function>/ one folder per Lambda, a thin handler; never imports another function.
 * - lib/ (the construct) needs only the contract; product code never imports local/, test/ or bench/.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'contract-is-innermost',
      comment: 'lambdas/contract imports nothing else of ours.',
      severity: 'error',
      from: { path: '^lambdas/contract/' },
      to: { path: '^(lambdas/(?!contract/)|lib/|local/|bench/|test/|events/|bin/)' },
    },
    {
      name: 'domain-imports-inward-only',
      comment: 'lambdas/domain imports only the contract: no AWS, no HTTP, no adapters.',
      severity: 'error',
      from: { path: '^lambdas/domain/' },
      to: { path: '^(lambdas/(?!contract/|domain/)|lib/|local/|bench/|test/)' },
    },
    {
      name: 'domain-has-no-io',
      comment: 'lambdas/domain uses no AWS SDK and no network.',
      severity: 'error',
      from: { path: '^lambdas/domain/' },
      to: {
        path: '(^|/)node_modules/(@aws-sdk|@aws-lambda-powertools|@middy)/|^(node:)?(http|https|net|tls|dns)$',
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'adapters-import-inward-only',
      comment: 'lambdas/waterflai and lambdas/aws import the contract and the domain only (not each other).',
      severity: 'error',
      from: { path: '^lambdas/(waterflai|aws)/' },
      to: { path: '^(lambdas/(?!contract/|domain/|waterflai/|aws/)|lib/|local/|bench/|test/)' },
    },
    {
      name: 'adapters-stay-apart',
      comment: 'The Waterflai client and the AWS adapters do not depend on each other.',
      severity: 'error',
      from: { path: '^lambdas/waterflai/' },
      to: { path: '^lambdas/aws/' },
    },
    {
      name: 'aws-not-waterflai',
      severity: 'error',
      from: { path: '^lambdas/aws/' },
      to: { path: '^lambdas/waterflai/' },
    },
    {
      name: 'platform-below-lifecycle',
      comment: 'lambdas/platform wires clients; it knows no lifecycle rule and no function.',
      severity: 'error',
      from: { path: '^lambdas/platform/' },
      to: { path: '^(lambdas/(lifecycle|start-execution|poll|finish|reconcile|sweep)/|lib/|local/|bench/|test/)' },
    },
    {
      name: 'lifecycle-below-functions',
      severity: 'error',
      from: { path: '^lambdas/lifecycle/' },
      to: { path: '^(lambdas/(start-execution|poll|finish|reconcile|sweep)/|lib/|local/|bench/|test/)' },
    },
    {
      name: 'functions-are-independent',
      comment: 'One Lambda never imports another one.',
      severity: 'error',
      from: { path: '^lambdas/(start-execution|poll|finish|reconcile|sweep)/' },
      to: { path: '^lambdas/(start-execution|poll|finish|reconcile|sweep)/', pathNot: '^lambdas/$1/' },
    },
    {
      name: 'construct-needs-only-the-contract',
      comment: 'lib/ (the construct) imports only lambdas/contract of the function code.',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^(lambdas/(?!contract/)|local/|bench/|test/)' },
    },
    {
      name: 'product-knows-no-local-runtime',
      comment: 'Product code never imports the local runtime, the simulator, the bench or the tests.',
      severity: 'error',
      from: { path: '^(lambdas|lib|bin|events)/' },
      to: { path: '^(local|bench|test)/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: { path: '^(lambdas|lib)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|cdk\\.out|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.js', '.json'],
    },
  },
};
