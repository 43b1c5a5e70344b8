// The floor of the stack: Koa answering every request with the logout's fixed 200 body,
// doing none of the work. Plain JavaScript, so nothing but Koa runs per request.
import Koa from 'koa';

const body = { status: { code: 200, name: 'OK', message: 'User has been successfully logged out.' }, data: {} };
const app = new Koa();
app.use((ctx) => {
  ctx.body = body;
});
const server = app.listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
