// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'generated/', 'var/', 'test-output/', 'node_modules/', 'packages/*/dist/', 'packages/*/generated/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', 'contract-tests/*.cjs', 'scripts/*.mjs', 'bench/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // node:test awaits what describe and test return; a test file never awaits them itself.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'suite', 'test'] }] },
      ],
      // As TypeScript's noUnusedParameters: `_` marks a parameter kept for its position; a
      // property named beside a rest element is there to leave it out.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // The import graph (docs/design.md §10): entry → http → domain ← store. The domain owns its
    // ports and knows nothing of HTTP, SQL or the entry points.
    files: ['src/domain/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../*', '!../domain'], message: 'src/domain imports only src/domain (and packages).' }] },
      ],
    },
  },
  // A store backend implements the domain's ports and knows nothing of HTTP, tokens or the
  // configuration (docs/design.md §7): src/store imports its own files, the domain, the phase
  // timing (off unless measured), the SQL packages and Node's builtins, and nothing else. An allow-list, so a new import is a decision.
  ...[
    { files: ['src/store/*.ts'], own: String.raw`\./|\.\./request-phases\.js$`, domain: String.raw`\.\./domain/` },
    { files: ['src/store/backends/*.ts'], own: String.raw`\.\.?/[^./]`, domain: String.raw`\.\./\.\./domain/` },
  ].map(({ files, own, domain }) => ({
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^(?!${own}|${domain}|(kysely|better-sqlite3|pg)$|node:)`,
              message:
                'src/store imports only its own files, src/domain, the phase timing, kysely, better-sqlite3, pg and node: builtins.',
            },
          ],
        },
      ],
    },
  })),
  // Allow-lists (docs/design.md §10): what the contract vocabulary and the shipped libraries may
  // import. Each regex refuses every import but those it names.
  {
    // The vocabulary the service and fib-auth-resource-server share: it names the domain's
    // failure reasons and nothing else of the service.
    files: ['src/contract/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./|\\.\\./domain/failures\\.js$|node:http$)',
              message: 'src/contract imports only itself and the domain failure reasons.',
            },
          ],
        },
      ],
    },
  },
  {
    // fib-auth-client runs in browsers: its own files, its generated contract types, its
    // dependency openapi-fetch and, for ./msw, its optional peers msw and openapi-msw.
    files: ['packages/client/src/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./|\\.\\./generated/|openapi-fetch$|msw$|openapi-msw$)',
              message: 'fib-auth-client imports only its own files, its generated types and its declared dependencies.',
            },
          ],
        },
      ],
    },
  },
  {
    // fib-auth-resource-server: its own files, the vocabulary, the domain's token checks (one
    // copy of the rules a token passes; its build bundles them), jose and Node's built-ins.
    files: ['packages/resource-server/src/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex:
                '^(?!\\./|\\.\\./\\.\\./\\.\\./src/contract/|\\.\\./\\.\\./\\.\\./src/domain/(bearer|tokens|failures)\\.js$|jose$|node:)',
              message:
                'fib-auth-resource-server imports only its own files, src/contract, the domain token checks, jose and node: built-ins.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.cjs', '**/*.mjs', '**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        URL: 'readonly',
      },
    },
  },
  {
    // CommonJS imports with require(): Dredd require()s its hook files.
    files: ['**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
