import { describe, expect, it } from 'vitest';
import { groupBy } from '../../services/src/group-by.js';

describe('groupBy', () => {
  it('keeps first-seen key order and item order, and leaves out undefined keys', () => {
    const g = groupBy([3, 1, 4, 1, 5, 9, 2, 6], (n) => (n === 9 ? undefined : n % 2 ? 'odd' : 'even'));
    expect([...g.keys()]).toEqual(['odd', 'even']);
    expect(g.get('odd')).toEqual([3, 1, 1, 5]);
    expect(g.get('even')).toEqual([4, 2, 6]);
    expect(groupBy([], () => 'x').size).toBe(0);
  });
});
