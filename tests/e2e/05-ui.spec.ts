// (5) The MLflow UI in headless Chromium (Debian's, driven by puppeteer-core) through the ingress:
// basic auth answered by the browser, the experiment with its run and the registered model with its
// alias on screen. Screenshots stay in test-artifacts/.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import puppeteer, { Browser, Page } from "puppeteer-core";
import type { LocalPlatform } from "../../scripts/local/platform";
import { ensureLocalTools } from "../../scripts/local/tools";
import { ARTIFACTS, platformUp, timed, wineExample, ExampleRun } from "./fixture";

/** Waits for `text` on the page; on failure keeps a screenshot and says what the page showed. */
async function showsText(page: Page, text: string): Promise<void> {
    try {
        await page.waitForFunction((t) => document.body?.innerText.includes(t), { timeout: 90_000, polling: 500 }, text);
    } catch (e) {
        const shown = await page.evaluate(() => document.body?.innerText ?? "").catch(() => "");
        await page.screenshot({ path: path.join(ARTIFACTS, `failed-${text.replace(/\W+/g, "_")}.png`) }).catch(() => undefined);
        throw new Error(`"${text}" not shown at ${page.url()} (${(e as Error).message}); the page shows:\n${shown.slice(0, 1500)}`);
    }
}

describe("e2e (5): the MLflow UI in headless Chromium", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    let run: ExampleRun;
    let browser: Browser;
    let page: Page;

    before(async () => {
        p = await platformUp();
        run = await wineExample(p);
        const { chromium } = await timed("install chromium", () => ensureLocalTools(["chromium"]));
        browser = await puppeteer.launch({
            executablePath: chromium,
            headless: true,
            // As root Chromium needs --no-sandbox; /dev/shm is small in containers.
            args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        });
        page = await browser.newPage();
        await page.setViewport({ width: 1440, height: 900 });
        fs.mkdirSync(ARTIFACTS, { recursive: true });
    });

    after(async () => {
        await browser?.close();
    });

    it("gets 401 without credentials", async () => {
        const anonymous = await browser.newPage();
        // Headless Chromium has no login prompt: a basic-auth challenge it cannot answer fails the navigation.
        let status: number | undefined;
        await assert.rejects(async () => {
            status = (await anonymous.goto(`${p.uiUrl}/`, { waitUntil: "domcontentloaded" }))?.status();
            if (status === 401) throw new Error("net::ERR_INVALID_AUTH_CREDENTIALS (401)");
        }, /ERR_INVALID_AUTH_CREDENTIALS/);
        await anonymous.close();
    });

    it("shows the experiment and its run", async () => {
        await page.authenticate({ username: p.login.user, password: p.login.password });
        const res = await page.goto(`${p.uiUrl}/#/experiments`, { waitUntil: "networkidle2" });
        assert.equal(res?.status(), 200);
        await showsText(page, "wine-quality");
        await page.screenshot({ path: path.join(ARTIFACTS, "mlflow-ui-experiments.png") });
        // The "Model training" view of the experiment (a fresh browser would open the GenAI overview).
        await page.goto(`${p.uiUrl}/#/experiments/${run.experiment_id}/runs?workflowType=machine_learning`, { waitUntil: "networkidle2" });
        await showsText(page, "logistic-regression");
        await page.screenshot({ path: path.join(ARTIFACTS, "mlflow-ui-runs.png") });
    });

    it("shows the registered model with the champion alias", async () => {
        await page.goto(`${p.uiUrl}/#/models`, { waitUntil: "networkidle2" });
        await showsText(page, "wine-quality");
        await page.goto(`${p.uiUrl}/#/models/wine-quality`, { waitUntil: "networkidle2" });
        await showsText(page, "champion");
        await page.screenshot({ path: path.join(ARTIFACTS, "mlflow-ui-model.png") });
    });
});
