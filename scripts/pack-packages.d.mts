// Types of pack-packages.mjs, for the packed-install test (e2e/test/install.test.ts).

/** The repository root. */
export declare const root: string;

/** A publishable package: its name, folder and package.json. */
export interface PublicPackage {
  name: string;
  dir: string;
  pkg: Record<string, unknown>;
}

/** The publishable packages (non-private folders of packages/), sorted by folder name. */
export declare function publicPackages(): PublicPackage[];

/** `pnpm build` of every package. */
export declare function buildPackages(options?: { quiet?: boolean }): void;

/** `pnpm pack` of one package folder into `out`; returns the tarball's absolute path. */
export declare function packPackage(dir: string, out: string): string;

/** Whether every package's dist/ is newer than every package's build inputs. */
export declare function builtIsFresh(): boolean;
